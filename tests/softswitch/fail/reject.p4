// error: reject.p4:6:5: not supported by softswitch: an explicit transition to reject (p4c's bmv2 back end rejects it too); use verify()
#include "../stf/common.p4"
struct headers { ethernet_t eth; }
struct meta_t { }
parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); transition reject; }
}
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) { apply { } }
control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); } }
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
