/* IPv4 header checksum verify/update and the UDP checksum over a pseudo header plus the
 * payload (update_checksum_with_payload); a bad IPv4 checksum sets checksum_error, no drop. */
#define STF_OWN_CHECKSUMS
#include "common.p4"

header ipv4_t {
    bit<4> version; bit<4> ihl; bit<8> tos; bit<16> totalLen; bit<16> id; bit<3> flags;
    bit<13> frag; bit<8> ttl; bit<8> protocol; bit<16> csum; bit<32> src; bit<32> dst;
}
header udp_t { bit<16> sport; bit<16> dport; bit<16> len; bit<16> csum; }
struct headers { ethernet_t eth; ipv4_t ip; udp_t udp; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start {
        pkt.extract(h.eth);
        pkt.extract(h.ip);
        pkt.extract(h.udp);
        transition accept;
    }
}

control V(inout headers h, inout meta_t m) {
    apply {
        verify_checksum(h.ip.isValid(),
            { h.ip.version, h.ip.ihl, h.ip.tos, h.ip.totalLen, h.ip.id, h.ip.flags, h.ip.frag,
              h.ip.ttl, h.ip.protocol, h.ip.src, h.ip.dst },
            h.ip.csum, HashAlgorithm.csum16);
    }
}

control I(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = 1;
        if (sm.checksum_error == 1) {
            sm.egress_spec = 2;
        }
        h.udp.dport = 53;
        h.ip.ttl = h.ip.ttl - 1;
    }
}

control C(inout headers h, inout meta_t m) {
    apply {
        update_checksum(h.ip.isValid(),
            { h.ip.version, h.ip.ihl, h.ip.tos, h.ip.totalLen, h.ip.id, h.ip.flags, h.ip.frag,
              h.ip.ttl, h.ip.protocol, h.ip.src, h.ip.dst },
            h.ip.csum, HashAlgorithm.csum16);
        update_checksum_with_payload(h.udp.isValid(),
            { h.ip.src, h.ip.dst, 8w0, h.ip.protocol, h.udp.len, h.udp.sport, h.udp.dport, h.udp.len },
            h.udp.csum, HashAlgorithm.csum16);
    }
}

control D(packet_out pkt, in headers h) { apply { pkt.emit(h.eth); pkt.emit(h.ip); pkt.emit(h.udp); } }

V1Switch(P(), V(), I(), NoEgress<headers, meta_t>(), C(), D()) main;
