/* Idioms common in tutorial and production v1model programs. */
#include <core.p4>
#include <v1model.p4>

const bit<16> TYPE_IPV4 = 0x800;
const bit<16> TYPE_TUNNEL = 0x1212;
typedef bit<9> egressSpec_t;

header ethernet_t { bit<48> dstAddr; bit<48> srcAddr; bit<16> etherType; }
header tunnel_t { bit<16> proto_id; bit<16> dst_id; }
header ipv4_t {
    bit<4> version; bit<4> ihl; bit<8> diffserv; bit<16> totalLen; bit<16> identification;
    bit<3> flags; bit<13> fragOffset; bit<8> ttl; bit<8> protocol; bit<16> hdrChecksum;
    bit<32> srcAddr; bit<32> dstAddr;
}
struct metadata { bool tunnelled; bit<10> bucket; bit<32> seen; }
struct headers { ethernet_t ethernet; tunnel_t tunnel; ipv4_t ipv4; }

parser MyParser(packet_in packet, out headers hdr, inout metadata meta, inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {
            TYPE_TUNNEL: parse_tunnel;
            TYPE_IPV4: parse_ipv4;
            default: accept;
        }
    }
    state parse_tunnel {
        packet.extract(hdr.tunnel);
        meta.tunnelled = true;
        transition select(packet.lookahead<bit<4>>()) {
            4: parse_ipv4;
            default: accept;
        }
    }
    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        verify(hdr.ipv4.ihl >= 5, error.HeaderTooShort);
        transition accept;
    }
}

control MyVerifyChecksum(inout headers hdr, inout metadata meta) { apply { } }

control MyIngress(inout headers hdr, inout metadata meta, inout standard_metadata_t standard_metadata) {
    register<bit<32>>(1024) seen;

    action drop() { mark_to_drop(standard_metadata); }
    action forward(egressSpec_t port) { standard_metadata.egress_spec = port; }
    action tunnel_forward(egressSpec_t port) { standard_metadata.egress_spec = port; }

    table ipv4_exact {
        key = { hdr.ipv4.dstAddr: exact; }
        actions = { forward; drop; @defaultonly NoAction; }
        default_action = NoAction();
        const entries = {
            0x0a000002: forward(2);
            0x0a000003: drop();
        }
    }
    table tunnel_exact {
        key = { hdr.tunnel.dst_id: exact; }
        actions = { tunnel_forward; drop; }
        default_action = drop();
    }
    apply {
        standard_metadata.egress_spec = 1;
        if (hdr.ipv4.isValid() && !meta.tunnelled) {
            ipv4_exact.apply();
        }
        if (hdr.tunnel.isValid()) {
            tunnel_exact.apply();
        }
        hash(meta.bucket, HashAlgorithm.identity, (bit<10>)0, { hdr.ethernet.etherType }, (bit<32>)1024);
        @atomic {
            seen.read(meta.seen, (bit<32>)meta.bucket);
            seen.write((bit<32>)meta.bucket, meta.seen + 1);
        }
        hdr.ethernet.srcAddr[7:0] = (bit<8>)meta.seen;
    }
}

control MyEgress(inout headers hdr, inout metadata meta, inout standard_metadata_t standard_metadata) { apply { } }

control MyComputeChecksum(inout headers hdr, inout metadata meta) {
    apply {
        update_checksum(
            hdr.ipv4.isValid(),
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen, hdr.ipv4.identification,
              hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl, hdr.ipv4.protocol, hdr.ipv4.srcAddr,
              hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum,
            HashAlgorithm.csum16);
    }
}

control MyDeparser(packet_out packet, in headers hdr) {
    apply { packet.emit(hdr); }
}

V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(), MyDeparser()) main;
