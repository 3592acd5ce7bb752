/* Parser features: select with masks, ranges, tuples and default; header stacks; varbit;
 * lookahead, advance, verify; sub-parsers; parser errors reach ingress without a drop. */
#include "common.p4"

error { BadValue }

header h8_t { bit<8> v; }
header opt_t { bit<8> len; varbit<64> data; }
struct headers { ethernet_t eth; h8_t[3] stk; opt_t opt; h8_t tail; }
struct meta_t { bit<8> n; bit<8> last; }

parser Tail(packet_in pkt, out h8_t tail) {  /* only what it writes: h.stk may be unset here */
    state start {
        pkt.extract(tail);
        verify(tail.v != 0xEE, error.BadValue);
        transition accept;
    }
}

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    Tail() tail_parser;
    state start {
        pkt.extract(h.eth);
        transition select(h.eth.etherType[15:8], h.eth.etherType[7:0]) {
            (0x10 &&& 0xF0, _): stack;
            (0x20, 0x00 .. 0x0F): opts;
            (0x30, 0x01): skip;
            (default, default): accept;
        }
    }
    state stack {
        pkt.extract(h.stk.next);
        m.last = (bit<8>)h.stk.lastIndex;  /* lastIndex exists only in a parser */
        transition select(h.stk.last.v) {
            0: accept;
            default: stack;
        }
    }
    state opts {
        m.n = pkt.lookahead<bit<8>>();
        pkt.extract(h.opt, (bit<32>)m.n * 8);
        transition parse_tail;
    }
    state skip {
        pkt.advance(16);
        transition parse_tail;
    }
    state parse_tail {
        tail_parser.apply(pkt, h.tail);
        transition accept;
    }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = 1;
        if (sm.parser_error == error.StackOutOfBounds) { sm.egress_spec = 3; }
        else if (sm.parser_error == error.PacketTooShort) { sm.egress_spec = 4; }
        else if (sm.parser_error == error.BadValue) { sm.egress_spec = 5; }
        else if (sm.parser_error != error.NoError) { sm.egress_spec = 6; }
        if (h.stk[0].isValid()) {
            h.eth.src[7:0] = m.last;
        }
        if (h.opt.isValid()) {
            h.eth.src[15:8] = h.opt.len;
        }
    }
}

control D(packet_out pkt, in headers h) {
    apply { pkt.emit(h.eth); pkt.emit(h.stk); pkt.emit(h.opt); pkt.emit(h.tail); }
}

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
