// error: unknown_action.p4:4:54: unknown action 'nope'
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    table t { key = { h.data.a: exact; } actions = { nope; } }
    apply { t.apply(); }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
