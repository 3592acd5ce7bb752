/* Stateful and hashing externs: counter, direct_counter, register, meter, hash, random. */
/* register<T, I> (an index type) needs the 2020 v1model, as in p4c */
#define V1MODEL_VERSION 20200408
#include "common.p4"

header data_t {
    bit<32> f; bit<16> g; bit<32> crc32; bit<16> crc16; bit<16> csum; bit<32> ident;
    bit<16> hashmod; bit<8> reg; bit<8> color; bit<8> rnd;
}
struct headers { ethernet_t eth; data_t data; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.data); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    counter<bit<32>>(8, CounterType.packets_and_bytes) cnt;
    direct_counter(CounterType.packets) dc;
    register<bit<8>, bit<32>>(4) regs;
    meter<bit<32>>(4, MeterType.packets) mtr;

    table t {
        key = { h.data.g: exact; }
        actions = { NoAction; }
        counters = dc;
    }
    apply {
        sm.egress_spec = 1;
        cnt.count((bit<32>)h.data.g[2:0]);
        bit<8> r;
        regs.read(r, 32w1);
        r = r + 1;
        regs.write(32w1, r);
        regs.read(h.data.reg, 32w1);
        hash(h.data.crc32, HashAlgorithm.crc32, 32w0, { h.data.f, h.data.g }, 64w0x100000000);
        hash(h.data.crc16, HashAlgorithm.crc16, 16w0, { h.data.f }, 32w65536);
        hash(h.data.csum, HashAlgorithm.csum16, 16w0, { h.data.f, h.data.g, 16w0 }, 32w65536);
        hash(h.data.ident, HashAlgorithm.identity, 32w0, { h.data.f }, 64w0x100000000);
        hash(h.data.hashmod, HashAlgorithm.identity, 16w100, { h.data.g }, 32w7);
        mtr.execute_meter(32w0, h.data.color);
        random(h.data.rnd, 8w0x42, 8w0x42);
        t.apply();
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.data); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
