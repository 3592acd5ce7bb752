// error: unknown_match_kind.p4:4:23: unknown match kind 'fuzzy'
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    table t { key = { h.data.a: fuzzy; } actions = { NoAction; } }
    apply { t.apply(); }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
