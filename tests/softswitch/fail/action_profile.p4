// error: action_profile.p4:4:5: not supported by softswitch: action_profile
#include "head.inc"
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    action_profile(128) ap;
    apply { }
}
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
