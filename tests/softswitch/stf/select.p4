/* select on several expressions: tuples of values, ranges, masks, slices and _ */
#include "common.p4"
header d_t { bit<4> a; bit<4> b; bit<8> c; bit<8> r; }
struct headers { ethernet_t eth; d_t d; }
struct meta_t { }
parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.d);
        transition select(h.d.a, h.d.b, h.d.c[7:4]) {
            (1, 0 .. 3, _): s1;
            (1, _, 0xF &&& 0xF): s2;
            (_, 5, 2): s3;
            default: accept;
        } }
    state s1 { h.d.r = 1; transition accept; }
    state s2 { h.d.r = 2; transition accept; }
    state s3 { h.d.r = 3; transition accept; }
}
control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) { apply { sm.egress_spec = 2; } }
control D(packet_out pkt, in headers h) { apply { pkt.emit(h); } }
V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
