// error: no_field.p4:4:24: header data_t has no field 'zz'
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply { h.data.a = h.data.zz; }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
