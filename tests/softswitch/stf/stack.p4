/* Header stack operations in controls: push_front, pop_front, indexing, validity, size. */
#include "common.p4"

header h8_t { bit<8> v; }
header res_t { bit<8> size; bit<8> valid_mask; }
struct headers { ethernet_t eth; h8_t[4] s; res_t res; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start {
        pkt.extract(h.eth);
        pkt.extract(h.s.next);
        pkt.extract(h.s.next);
        transition accept;
    }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = 1;
        if (h.eth.etherType == 1) {
            h.s.push_front(1);
            h.s[0].setValid();
            h.s[0].v = 0xAA;
        } else if (h.eth.etherType == 2) {
            h.s.pop_front(1);
        }
        h.res.setValid();
        h.res.size = (bit<8>)h.s.size;
        h.res.valid_mask = (bit<8>)((bit<1>)h.s[3].isValid() ++ (bit<1>)h.s[2].isValid()
                                    ++ (bit<1>)h.s[1].isValid() ++ (bit<1>)h.s[0].isValid());
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.s); pkt.emit(h.res); } }

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
