// error: value_set.p4:9:5: not supported by softswitch: value_set
#include "../stf/common.p4"
struct headers { ethernet_t eth; }
struct meta_t { }
parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); transition accept; }
}
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    value_set<bit<16>>(4) vs;
    apply { }
}
