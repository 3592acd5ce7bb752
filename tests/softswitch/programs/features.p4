/* Control-plane features: controller headers, a ternary table with idle timeouts and a direct
 * counter, digests, a register and a counter. */
#include <core.p4>
#include <v1model.p4>

const bit<9> CPU_PORT = 255;

@controller_header("packet_in")
header packet_in_t { bit<9> ingress_port; bit<7> pad; }

@controller_header("packet_out")
header packet_out_t { bit<9> egress_port; bit<7> pad; }

header ethernet_t { bit<48> dst; bit<48> src; bit<16> etherType; }

struct headers { packet_in_t packet_in; packet_out_t packet_out; ethernet_t eth; }
struct learn_t { bit<48> src; bit<9> port; }
struct meta_t { }

parser P(packet_in pkt, out headers h, inout meta_t m, inout standard_metadata_t sm) {
    state start {
        transition select(sm.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_eth;
        }
    }
    state parse_packet_out { pkt.extract(h.packet_out); transition parse_eth; }
    state parse_eth { pkt.extract(h.eth); transition accept; }
}

control NoVerify(inout headers h, inout meta_t m) { apply { } }
control NoCompute(inout headers h, inout meta_t m) { apply { } }

control MyIngress(inout headers h, inout meta_t m, inout standard_metadata_t sm) {
    direct_counter(CounterType.packets_and_bytes) acl_counter;
    counter(16, CounterType.packets) port_counter;
    register<bit<32>>(16) last_len;

    action to_cpu() {
        sm.egress_spec = CPU_PORT;
        h.packet_in.setValid();
        h.packet_in.ingress_port = sm.ingress_port;
    }
    action fwd(bit<9> port) { sm.egress_spec = port; }
    action learn() {
        digest<learn_t>(1, { h.eth.src, sm.ingress_port });
        sm.egress_spec = 1;
    }
    action drop() { mark_to_drop(sm); }

    table acl {
        key = {
            h.eth.etherType: ternary;
            sm.ingress_port: exact;
        }
        actions = { to_cpu; fwd; learn; drop; }
        default_action = drop();
        support_timeout = true;
        counters = acl_counter;
        size = 64;
    }
    apply {
        port_counter.count((bit<32>)sm.ingress_port[3:0]);
        last_len.write((bit<32>)sm.ingress_port[3:0], sm.packet_length);
        if (h.packet_out.isValid()) {
            sm.egress_spec = h.packet_out.egress_port;
            h.packet_out.setInvalid();
        } else {
            acl.apply();
        }
    }
}

control MyEgress(inout headers h, inout meta_t m, inout standard_metadata_t sm) { apply { } }

control MyDeparser(packet_out pkt, in headers h) {
    apply { pkt.emit(h.packet_in); pkt.emit(h.eth); }
}

V1Switch(P(), NoVerify(), MyIngress(), MyEgress(), NoCompute(), MyDeparser()) main;
