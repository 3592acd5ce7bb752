// error: verify_in_control.p4:4:13: verify can only be used in a parser
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply { verify(true, error.NoMatch); }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
