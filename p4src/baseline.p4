/* Baseline for comparisons with dysco.p4: the same bump in the wire (HOST <-> NET, the same
 * controller headers and packet-out modes) without any Dysco logic. */
#include <core.p4>
#include <v1model.p4>

#include "include/bump.p4"

/* Only what a bump in the wire without Dysco logic reads and writes (dysco.p4 has headers_t). */
struct headers_t {
    packet_in_h packet_in;
    packet_out_h packet_out;
    ethernet_h ethernet;
}

struct baseline_meta_t {
}

parser BaselineParser(packet_in pkt, out headers_t hdr, inout baseline_meta_t meta,
                      inout standard_metadata_t sm) {
    state start {
        transition select(sm.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    state parse_packet_out {
        pkt.extract(hdr.packet_out);
        transition parse_ethernet;
    }

    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition accept;
    }
}

control BaselineVerifyChecksum(inout headers_t hdr, inout baseline_meta_t meta) {
    apply { }
}

control BaselineIngress(inout headers_t hdr, inout baseline_meta_t meta, inout standard_metadata_t sm) {
    apply {
        bit<9> in_port = sm.ingress_port;
        if (hdr.packet_out.isValid()) {
            in_port = hdr.packet_out.port;
            if (hdr.packet_out.mode == PACKET_OUT_DIRECT) {
                sm.egress_spec = hdr.packet_out.port;
                hdr.packet_out.setInvalid();
                exit;
            }
            hdr.packet_out.setInvalid();
        }
        if (in_port == HOST_PORT) {
            sm.egress_spec = NET_PORT;
        } else if (in_port == NET_PORT) {
            sm.egress_spec = HOST_PORT;
        } else {
            mark_to_drop(sm);
        }
    }
}

control BaselineEgress(inout headers_t hdr, inout baseline_meta_t meta, inout standard_metadata_t sm) {
    apply { }
}

control BaselineComputeChecksum(inout headers_t hdr, inout baseline_meta_t meta) {
    apply { }
}

control BaselineDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.ethernet);
    }
}

V1Switch(BaselineParser(), BaselineVerifyChecksum(), BaselineIngress(), BaselineEgress(),
         BaselineComputeChecksum(), BaselineDeparser()) main;
