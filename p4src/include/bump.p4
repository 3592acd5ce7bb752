/* The bump in the wire that dysco.p4 and baseline.p4 both are: its ports, the controller headers
 * the agent talks to it with, and Ethernet.  Every name and value here is mirrored in
 * dysco/p4names.py (tests check they agree). */
#ifndef DYSCO_BUMP_P4
#define DYSCO_BUMP_P4

/* Ports of the bump in the wire.  Override with -DDYSCO_CPU_PORT=... and so on. */
#ifndef DYSCO_HOST_PORT
#define DYSCO_HOST_PORT 1
#endif
#ifndef DYSCO_NET_PORT
#define DYSCO_NET_PORT 2
#endif
#ifndef DYSCO_CPU_PORT
#define DYSCO_CPU_PORT 255
#endif
const bit<9> HOST_PORT = DYSCO_HOST_PORT;
const bit<9> NET_PORT = DYSCO_NET_PORT;
const bit<9> CPU_PORT = DYSCO_CPU_PORT;

/* packet_out.mode: PACKET_OUT_DIRECT sends the frame out of packet_out.port as is; any other mode
 * (the agent sends 1, PacketOutMode.PIPELINE) runs it through the pipeline as if it came in on
 * packet_out.port, except mode 2 in dysco.p4 (PACKET_OUT_EXPECT_ANSWER in constants.p4). */
const bit<8> PACKET_OUT_DIRECT = 0;

@controller_header("packet_in")
header packet_in_h {
    bit<9> ingress_port;
    bit<7> pad0;
    bit<8> reason;
    bit<8> detail;
    bit<16> policy_id;
    bit<32> session_id;
}

@controller_header("packet_out")
header packet_out_h {
    bit<9> port;
    bit<7> pad0;
    bit<8> mode;
    bit<8> pad1;
}

header ethernet_h {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

#endif
