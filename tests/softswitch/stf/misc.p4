/* Header and struct equality, @hidden tables (not in P4Info), nested struct copies,
 * field names that are Python keywords or start with an underscore. */
#include "common.p4"

header h_t { bit<8> a; bit<8> b; }
header odd_t { bit<7> _pad; bit<1> class; bit<8> type; bit<8> apply; }
struct pair_t { h_t x; h_t y; }
struct headers { ethernet_t eth; h_t one; h_t two; odd_t odd; }
struct meta_t { pair_t p; }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.one); pkt.extract(h.two); pkt.extract(h.odd); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    action set_port() { sm.egress_spec = 3; }
    @hidden table always {
        actions = { set_port; }
        default_action = set_port();
    }
    apply {
        always.apply();
        h.odd._pad = h.odd._pad + 1;
        h.odd.class = ~h.odd.class;
        h.odd.apply = h.odd.type;
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
