/* Header and struct equality, @hidden tables (not in P4Info), nested struct copies. */
#include "common.p4"

header h_t { bit<8> a; bit<8> b; }
struct pair_t { h_t x; h_t y; }
struct headers { ethernet_t eth; h_t one; h_t two; }
struct meta_t { pair_t p; }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.one); pkt.extract(h.two); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    action set_port() { sm.egress_spec = 3; }
    @hidden table always {
        actions = { set_port; }
        default_action = set_port();
    }
    apply {
        always.apply();
        m.p.x = h.one;
        m.p.y = h.two;
        pair_t copy = m.p;
        copy.x.a = 0xFF;          // a copy: m.p.x is unchanged
        if (m.p.x == m.p.y) {
            h.eth.src[7:0] = 1;
        } else if (copy.x != m.p.x) {
            h.eth.src[7:0] = 2;
        }
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
