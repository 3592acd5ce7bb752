/* Traffic manager: resubmit and recirculate with preserved metadata, I2E/E2E clones,
 * multicast replication; instance_type, egress_rid and egress_port as egress sees them. */
#define STF_OWN_EGRESS
#include "common.p4"

header data_t { bit<8> itype; bit<8> rid; bit<8> pass_; bit<8> port; }
struct headers { ethernet_t eth; data_t data; }
struct meta_t {
    @field_list(1) bit<8> passes;
    bit<8> other;
}

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.data); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = 1;
        if (sm.instance_type == 6) {
            h.data.pass_ = m.passes;
            sm.egress_spec = 2;
        } else if (sm.instance_type == 4) {
            h.data.pass_ = m.passes;
            sm.egress_spec = 3;
        } else if (h.data.pass_ == 1) {
            m.passes = 7;
            m.other = 1;
            resubmit_preserving_field_list(1);
        } else if (h.data.pass_ == 2) {
            clone(CloneType.I2E, 5);
        } else if (h.data.pass_ == 3) {
            sm.mcast_grp = 1;
        } else if (h.data.pass_ == 5) {
            mark_to_drop(sm);
        }
    }
}

control E(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        h.data.itype = (bit<8>)sm.instance_type;
        h.data.rid = (bit<8>)sm.egress_rid;
        h.data.port = (bit<8>)sm.egress_port;
        if (h.data.pass_ == 4 && sm.instance_type == 0) {
            m.passes = 9;
            recirculate_preserving_field_list(1);
        }
        if (h.data.pass_ == 6 && sm.instance_type == 0) {
            clone(CloneType.E2E, 5);
        }
        if (h.data.pass_ == 8) {
            mark_to_drop(sm);
        }
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.data); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), E(), NoCompute<headers, meta_t>(), D()) main;
