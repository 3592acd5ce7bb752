/* v1model details: egress_spec defaults to port 0, port 511 drops, mark_to_drop can be undone,
 * truncate, packet_length, ingress_port, log_msg and assert. */
#include "common.p4"

header data_t { bit<8> mode; bit<8> len; bit<8> inport; }
struct headers { ethernet_t eth; data_t data; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.data); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        log_msg("mode {}", { h.data.mode });
        assert(h.eth.isValid());
        h.data.len = (bit<8>)sm.packet_length;
        h.data.inport = (bit<8>)sm.ingress_port;
        if (h.data.mode == 2) {
            sm.egress_spec = 511;
        } else if (h.data.mode == 3) {
            sm.egress_spec = 4;
            truncate(15);
        } else if (h.data.mode == 4) {
            sm.egress_spec = 5;
            mark_to_drop(sm);
            sm.egress_spec = 6;
        }
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.data); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
