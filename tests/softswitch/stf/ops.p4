/* Operators on bit<W> and int<W>: wrap-around, saturation, shifts, slices, concatenation, casts. */
#include "common.p4"

header in_t { bit<8> a; bit<8> b; int<8> s; int<8> t; }
header out_t {
    bit<8> add; bit<8> sadd; bit<8> ssub; bit<8> sub; bit<16> cat; bit<8> shl; bit<8> shr;
    int<8> sshr; int<8> ssat; bit<8> slice; bit<8> neg; bit<8> not_; bit<8> mul; bit<8> div;
    bit<8> mod; bit<8> cond; bit<8> cast; bit<8> cmp; bit<8> setslice; bit<8> prec;
}
struct headers { ethernet_t eth; in_t i; out_t o; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start { pkt.extract(h.eth); pkt.extract(h.i); transition accept; }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        h.o.setValid();
        bit<8> a = h.i.a;
        bit<8> b = h.i.b;
        h.o.add = a + b;
        h.o.sadd = a |+| b;
        h.o.ssub = b |-| a;
        h.o.sub = b - a;
        h.o.cat = a ++ b;
        h.o.shl = a << 2;
        h.o.shr = a >> 3;
        h.o.sshr = h.i.s >> 1;
        h.o.ssat = h.i.t |+| h.i.t;
        h.o.slice = (bit<8>)a[7:4];
        h.o.neg = -a;
        h.o.not_ = ~a;
        h.o.mul = a * 3;
        h.o.div = a / 16;  /* bmv2 divides only by powers of two (a shift, a mask) */
        h.o.mod = a % 32;
        h.o.cond = h.i.s < h.i.t ? 8w1 : 8w2;
        h.o.cast = ((int<16>)h.i.s)[15:8];
        h.o.cmp = (bit<8>)(bit<1>)(h.i.s < h.i.t);
        h.o.setslice = 0;
        h.o.setslice[3:0] = 4w0xA;
        h.o.prec = (a & 0x0F) == 0 ? 8w0x55 : 8w0xAA;   // & binds tighter than ==
        sm.egress_spec = 2;
    }
}

control D(packet_out pkt, in headers h) {
    apply { pkt.emit(h.eth); pkt.emit(h.i); pkt.emit(h.o); }
}

V1Switch(P(), NoVerify<headers, meta_t>(), I(), NoEgress<headers, meta_t>(), NoCompute<headers, meta_t>(), D()) main;
