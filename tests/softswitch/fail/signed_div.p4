// error: signed_div.p4:4:24: not supported by softswitch: / on signed values
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply { h.data.s = h.data.s / 2; }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
