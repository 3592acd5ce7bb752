// error: if_not_bool.p4:4:17: an if condition must be bool, not bit<8>
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply { if (h.data.a) { } }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
