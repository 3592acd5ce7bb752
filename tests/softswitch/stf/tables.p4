/* Match kinds exact, ternary (priorities), range, optional; const entries; default actions;
 * hit/miss; switch on action_run; @name on tables and keys. */
#include "common.p4"

header data_t { bit<8> a; bit<8> b; bit<16> c; bit<8> d; bit<8> r1; bit<8> r2; bit<8> r3; bit<8> r4; bit<8> r5; }
struct headers { ethernet_t eth; data_t data; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.data); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    action set1(bit<8> v) { h.data.r1 = v; }
    action set2(bit<8> v) { h.data.r2 = v; }
    action set3(bit<8> v) { h.data.r3 = v; }
    action set4(bit<8> v) { h.data.r4 = v; }
    action port(bit<9> p) { sm.egress_spec = p; }
    action a_one() { h.data.r5 = 1; }
    action a_two() { h.data.r5 = 2; }

    table t_exact {
        key = { h.data.a: exact; }
        actions = { set1; port; }
        default_action = set1(0xEE);
    }
    @name("tern") table t_ternary {
        key = { h.data.b: ternary @name("bee"); }
        actions = { set2; }
    }
    table t_range {
        key = { h.data.c: range; }
        actions = { set3; NoAction; }
    }
    table t_opt {
        key = { h.data.d: optional; h.data.a: exact; }
        actions = { set4; }
    }
    table t_const {
        key = { h.data.a: ternary; h.data.b: exact; }
        actions = { a_one; a_two; NoAction; }
        const entries = {
            (0x10 &&& 0xF0, 1): a_one();
            (_, 1): a_two();
        }
        const default_action = NoAction();
    }
    apply {
        sm.egress_spec = 1;
        if (t_exact.apply().hit) {
            h.data.r5 = 0x77;
        }
        t_ternary.apply();
        if (t_range.apply().miss) {
            h.data.r3 = 0x99;
        }
        t_opt.apply();
        switch (t_const.apply().action_run) {
            a_one: { h.data.r5 = h.data.r5 + 0x10; }
            a_two: { h.data.r5 = h.data.r5 + 0x20; }
        }
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.data); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
