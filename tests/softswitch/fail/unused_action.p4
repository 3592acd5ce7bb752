// error: unused_action.p4:4:33: type mismatch: expected bit<8>, got bit<16>
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    action never() { h.data.a = h.data.b; }
    apply { }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
