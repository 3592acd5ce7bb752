// error: two_lpm.p4:4:5: a table can have at most one lpm key
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    table t { key = { h.data.a: lpm; h.data.b: lpm; } actions = { NoAction; } }
    apply { t.apply(); }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
