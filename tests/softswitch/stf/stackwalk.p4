/* A header stack filled by a parser loop (extract .next until a zero, StackOutOfBounds when
 * full), read by constant index, .last and .lastIndex (in the parser, the only place p4c allows
 * it), emitted whole. */
#include "common.p4"

header h8_t { bit<8> v; }
struct headers { ethernet_t eth; h8_t[3] stk; }
struct meta_t { bit<8> last; }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start {
        pkt.extract(h.eth);
        transition select(h.eth.etherType) {
            0x1000: walk;
            default: accept;
        }
    }
    state walk {
        pkt.extract(h.stk.next);
        m.last = (bit<8>)h.stk.lastIndex;
        transition select(h.stk.last.v) {
            0: accept;
            default: walk;
        }
    }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = 1;
        if (sm.parser_error == error.StackOutOfBounds) {
            sm.egress_spec = 3;
        }
        if (h.stk[0].isValid()) {
            h.eth.src[7:0] = m.last;
            h.stk[0].v = h.stk[0].v + 1;
        }
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.stk); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
