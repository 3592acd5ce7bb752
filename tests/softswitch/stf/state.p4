/* Indexed counters and registers: per-index packet/byte counts, read-modify-write of a register. */
#include "common.p4"

header data_t { bit<8> idx; bit<8> res; }
struct headers { ethernet_t eth; data_t data; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.data); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    counter(4, CounterType.packets_and_bytes) cnt;
    register<bit<8>>(4) regs;  /* the 2018 v1model: index bit<32> */

    action bump() {
        bit<8> r;
        regs.read(r, (bit<32>)h.data.idx);
        r = r + 1;
        regs.write((bit<32>)h.data.idx, r);
        h.data.res = r;
    }
    apply {
        sm.egress_spec = 2;
        cnt.count((bit<32>)h.data.idx);
        bump();
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.data); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
