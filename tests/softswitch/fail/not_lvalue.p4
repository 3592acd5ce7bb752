// error: not_lvalue.p4:5:13: cannot assign to this expression
#include "head.inc"
const bit<8> K = 2;
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply { K = 1; }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
