/* Control flow and declarations: switch on values with fall-through, exit, return, functions,
 * actions with inout parameters called directly, sub-controls with scalar parameters and a
 * keyless table, control-level locals, typedef/type/const, enums, header unions. */
#include "common.p4"

typedef bit<8> byte_t;
const byte_t K = 3;
enum bit<8> Op { ADD = 1, SUB = 2, XOR = 3 }
enum Color { RED, GREEN }

header a_t { bit<8> x; }
header b_t { bit<16> y; }
header_union u_t { a_t a; b_t b; }
header data_t { bit<8> op; byte_t v; bit<8> r; bit<8> s; bit<8> flags; }
struct headers { ethernet_t eth; data_t data; u_t u; }
struct meta_t { }

bit<8> twice(in bit<8> x) {
    return x + x;
}

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start {
        pkt.extract(h.eth);
        pkt.extract(h.data);
        transition select(h.data.op) {
            9: parse_a;
            default: accept;
        }
    }
    state parse_a { pkt.extract(h.u.a); transition accept; }
}

control Sub(inout bit<8> val, in bit<8> k) {
    action addk() { val = val + k; }
    table keyless {
        actions = { addk; }
        default_action = addk();
    }
    apply { keyless.apply(); }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    Sub() sub;
    bit<8> acc = 0;
    action bump(inout bit<8> x, bit<8> by) { x = x + by; }
    apply {
        sm.egress_spec = 1;
        switch (h.data.op) {
            Op.ADD: { h.data.r = h.data.v + K; }
            2:
            3: { h.data.r = h.data.v ^ 0xFF; }
            default: { h.data.r = 0; }
        }
        bump(h.data.r, 1);
        acc = twice(h.data.v);
        h.data.s = acc;
        sub.apply(h.data.s, 5);
        if (h.data.flags == 1) {
            h.data.flags = 0x11;
            exit;
        }
        if (h.data.flags == 2) {
            h.data.flags = 0x22;
            return;
        }
        Color c = Color.GREEN;
        if (c == Color.GREEN) {
            h.data.flags = h.data.flags | 0x80;
        }
        if (h.u.a.isValid()) {
            h.u.b.setValid();
            h.u.b.y = 0xBEEF;
        }
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.data); pkt.emit(h.u); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
