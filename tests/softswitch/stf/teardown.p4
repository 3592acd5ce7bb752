/* An ingress-to-egress clone as dysco.p4 makes its FIN/RST copies: ingress rewrites the packet
 * and asks for a clone_preserving_field_list; the clone is the packet as received, with only the
 * field list's metadata, and egress puts a report header in front of it (a packet-in).  The
 * original leaves rewritten.  Session 100 is mapped to port 9 by the test. */
#define STF_OWN_EGRESS
#include "common.p4"

header report_t { bit<8> itype; bit<8> kept; bit<8> lost; bit<8> rid; }
header data_t { bit<8> op; bit<8> val; }
struct headers { report_t report; ethernet_t eth; data_t data; }
struct meta_t {
    @field_list(1)
    bit<8> kept;   /* survives into the clone */
    bit<8> lost;   /* does not */
}

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.data); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = 2;
        m.kept = h.data.val + 1;
        m.lost = 0x77;
        h.data.val = 0xEE;  /* the original is rewritten; the clone must not see it */
        h.eth.etherType = 0x0801;
        if (h.data.op == 1) {
            clone_preserving_field_list(CloneType.I2E, 100, 1);
        } else if (h.data.op == 2) {
            clone_preserving_field_list(CloneType.I2E, 100, 1);
            mark_to_drop(sm);  /* the clone still goes */
        } else if (h.data.op == 3) {
            clone_preserving_field_list(CloneType.I2E, 7, 1);  /* a session nobody made: no clone */
        } else if (h.data.op == 4) {
            clone_preserving_field_list(CloneType.I2E, 100, 1);
            h.data.setInvalid();  /* the original shrinks after the clone grew */
        }
    }
}

control E(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        if (sm.instance_type == 1) {
            if (h.data.val == 0xDD) {
                mark_to_drop(sm);  /* a clone egress drops: the original is untouched */
            } else {
                h.report.setValid();
                h.report.itype = (bit<8>)sm.instance_type;
                h.report.kept = m.kept;
                h.report.lost = m.lost;
                h.report.rid = (bit<8>)sm.egress_rid;
            }
        }
    }
}

control D(packet_out pkt, in headers h) {
    apply { pkt.emit(h.report); pkt.emit(h.eth); pkt.emit(h.data); }
}

V1Switch(P(), NoVerify<headers, meta_t>(), I(), E(), NoCompute<headers, meta_t>(), D()) main;
