/* Headers that appear and disappear: setValid/setInvalid make the deparser grow or shrink the
 * packet at its head.  A 4-byte tag is pushed in front of Ethernet, or popped from there; on
 * IPv4 and on other frames (the ebpf target shrinks those by two different means), and with a
 * payload longer than one move step.  Port of the tag: where the packet goes.  `exit` ends the
 * ingress early; egress still runs. */
#define STF_OWN_EGRESS
#include "common.p4"

header tag_t { bit<8> op; bit<8> port; bit<16> pad; }
header ipv4_t { bit<8> ver_ihl; bit<8> tos; bit<16> len; bit<32> rest; bit<32> rest2; bit<32> src; bit<32> dst; }
struct headers { tag_t tag; ethernet_t eth; ipv4_t ip; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start {
        transition select(sm.ingress_port) {
            2: parse_tag;
            default: parse_eth;
        }
    }
    state parse_tag { pkt.extract(h.tag); transition parse_eth; }
    state parse_eth {
        pkt.extract(h.eth);
        transition select(h.eth.etherType) {
            0x0800: parse_ip;
            default: accept;
        }
    }
    state parse_ip { pkt.extract(h.ip); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = 1;
        if (sm.ingress_port == 7) {
            exit;  /* no tag pushed */
        }
        if (h.tag.isValid()) {
            /* pop: forward to the port the tag names */
            sm.egress_spec = (bit<9>)h.tag.port;
            if (h.ip.isValid() && h.tag.op == 1) {
                h.ip.setInvalid();  /* pop the IPv4 header too */
            }
            h.tag.setInvalid();
        } else {
            /* push: to port 2, the tag says where it came from */
            h.tag.setValid();
            h.tag.op = 0xAA;
            h.tag.port = (bit<8>)sm.ingress_port;
            h.tag.pad = 0;
            sm.egress_spec = 2;
        }
    }
}

control E(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        if (sm.egress_port == 1) {
            h.eth.dst[7:0] = 0xEE;
        }
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.tag); pkt.emit(h.eth); pkt.emit(h.ip); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), E(), NoCompute<headers, meta_t>(), D()) main;
