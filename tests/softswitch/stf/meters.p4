/* Meters: an indirect meter and a direct meter (two-rate three-colour), colours into the packet. */
#include "common.p4"

header data_t { bit<8> key; bit<8> color; bit<8> dcolor; }
struct headers { ethernet_t eth; data_t data; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.data); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    meter(2, MeterType.packets) mtr;
    direct_meter<bit<8>>(MeterType.packets) dm;
    action colour() { dm.read(h.data.dcolor); }
    table t {
        key = { h.data.key: exact; }
        actions = { colour; NoAction; }
        meters = dm;
    }
    apply {
        sm.egress_spec = 1;
        mtr.execute_meter((bit<32>)h.data.key, h.data.color);
        t.apply();
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.data); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
