/* Dysco fast path, v1model top level.
 *
 * The Dysco logic lives in include/ (headers, parser states, tables and actions, translation,
 * checksums) and is architecture independent; this file maps it onto v1model: controller
 * headers, CPU port, drop, clone of RST copies.  See docs/dataplane.md.
 */
#include <core.p4>
#include <v1model.p4>

#include "include/headers.p4"

parser DyscoParser(packet_in pkt, out headers_t hdr, inout dysco_meta_t meta,
                   inout standard_metadata_t sm) {
#include "include/parser.p4"

    state start {
        transition select(sm.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    state parse_packet_out {
        pkt.extract(hdr.packet_out);
        transition parse_ethernet;
    }
}

control DyscoVerifyChecksum(inout headers_t hdr, inout dysco_meta_t meta) {
    apply { }
}

control DyscoIngress(inout headers_t hdr, inout dysco_meta_t meta, inout standard_metadata_t sm) {
#include "include/ingress.p4"
#include "include/translate.p4"

    /* punts above the rate the agent configured per reason are dropped here and counted */
    meter(PUNT_REASONS, MeterType.packets) punt_meter;
    counter(PUNT_REASONS, CounterType.packets) punt_dropped;

    /* Dysco SYNs and control messages from agents the local agent knows (it authenticated a
     * message from them) are metered per agent, not under their reason (docs/dataplane.md) */
    meter(PEER_CELLS, MeterType.packets) peer_meter;

    action peer(bit<32> cell) {
        meta.peer_cell = cell;
    }

    table known_peer {
        key = { hdr.ipv4.src_addr : exact; }
        actions = { peer; NoAction; }
        default_action = NoAction();
        size = DYSCO_PEER_CELLS;
    }

    /* Answers the agent expects from its host (packet_out mode PACKET_OUT_EXPECT_ANSWER): the cell
     * of an answer's five-tuple (a csum16 hash) holds its tag, (src_addr ^ dst_addr, src_port,
     * dst_port); 0 is no expectation.  A tag, not a bit: a SYN-ACK of another connection that falls
     * on the same cell is forwarded and cannot take the expectation away.  An answer does not
     * clear its cell either: a retransmitted SYN-ACK that still finds no entry (slow writes) must
     * be punted too; the cell is overwritten by a later expectation, which the agent sends only
     * once this one's entries are in (docs/dataplane.md). */
#if DYSCO_ANSWER_CELLS > 0
    register<bit<64>>(ANSWER_CELLS) answer_expected;
#endif

#define DYSCO_ANSWER_CELL(CELL, SRC, DST, SPORT, DPORT) \
    hash(CELL, HashAlgorithm.csum16, (bit<32>)0, { SRC, DST, SPORT, DPORT }, ANSWER_CELLS);
#define DYSCO_ANSWER_TAG(SRC, DST, SPORT, DPORT) \
    (((bit<64>)(SRC ^ DST)) << 32 | ((bit<64>)SPORT) << 16 | (bit<64>)DPORT)

    apply {
        if (hdr.packet_out.isValid()) {
#if DYSCO_ANSWER_CELLS > 0
            if (hdr.packet_out.mode == PACKET_OUT_EXPECT_ANSWER) {
                if (hdr.tcp.isValid()) {
                    /* the answer comes back with the five-tuple reversed */
                    bit<32> cell;
                    DYSCO_ANSWER_CELL(cell, hdr.ipv4.dst_addr, hdr.ipv4.src_addr, hdr.tcp.dst_port,
                                      hdr.tcp.src_port)
                    answer_expected.write(cell, DYSCO_ANSWER_TAG(hdr.ipv4.dst_addr, hdr.ipv4.src_addr,
                                                                 hdr.tcp.dst_port, hdr.tcp.src_port));
                }
                sm.egress_spec = hdr.packet_out.port;
                hdr.packet_out.setInvalid();
                exit;
            }
#endif
            if (hdr.packet_out.mode == PACKET_OUT_DIRECT) {
                sm.egress_spec = hdr.packet_out.port;
                hdr.packet_out.setInvalid();
                exit;
            }
            meta.in_port = hdr.packet_out.port;
            hdr.packet_out.setInvalid();
        } else {
            meta.in_port = sm.ingress_port;
        }
        meta.parser_ok = (bit<1>)(sm.parser_error == error.NoError);
        if (hdr.ipv4.isValid()) {
            bit<32> ip_end = 14 + (bit<32>)hdr.ipv4.total_len;
            if (sm.ingress_port == CPU_PORT) {
                ip_end = ip_end + 4;  /* the packet_out header */
            }
            /* longer is fine (Ethernet padding): the TCP checksum is fixed incrementally */
            meta.frame_length_bad = (bit<1>)(sm.packet_length < ip_end);
        }

        DYSCO_INGRESS_APPLY

#if DYSCO_ANSWER_CELLS > 0
        if (meta.host_answer_miss == 1) {
            /* a SYN-ACK from HOST without an entry: the answer to a SYN the agent handed to its
             * host early, or (no expectation, or another connection's) forwarded as it is */
            bit<32> cell;
            bit<64> expected;
            DYSCO_ANSWER_CELL(cell, hdr.ipv4.src_addr, hdr.ipv4.dst_addr, hdr.tcp.src_port, hdr.tcp.dst_port)
            answer_expected.read(expected, cell);
            if (expected != 0 && expected == DYSCO_ANSWER_TAG(hdr.ipv4.src_addr, hdr.ipv4.dst_addr,
                                                              hdr.tcp.src_port, hdr.tcp.dst_port)) {
                punt(REASON_SETUP_MISS);
            }
        }
#endif

        if (meta.copy_to_cpu == 1) {
            /* a RST copy is a punt too, limited under its own reason; the segment goes on */
            bit<2> copy_color;
            punt_meter.execute_meter((bit<32>)REASON_TEARDOWN, copy_color);
            if (copy_color == METER_RED) {
                punt_dropped.count((bit<32>)REASON_TEARDOWN);
            } else {
                clone_preserving_field_list(CloneType.I2E, TEARDOWN_CLONE_SESSION, 1);
            }
        }
        if (meta.drop == 1) {
            mark_to_drop(sm);
        } else if (meta.to_cpu == 1) {
            bit<2> color;
            bit<1> known = 0;
            if (meta.reason == REASON_DYSCO_SYN || meta.reason == REASON_CONTROL || meta.reason == REASON_INBAND) {
                if (known_peer.apply().hit) {
                    known = 1;
                }
            }
            if (known == 1) {
                peer_meter.execute_meter(meta.peer_cell, color);
            } else {
                punt_meter.execute_meter((bit<32>)meta.reason, color);
            }
            if (color == METER_RED) {
                punt_dropped.count((bit<32>)meta.reason);
                mark_to_drop(sm);
                exit;
            }
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = meta.in_port;
            hdr.packet_in.pad0 = 0;
            hdr.packet_in.reason = meta.reason;
            hdr.packet_in.detail = meta.detail;
            hdr.packet_in.policy_id = meta.policy_id;
            hdr.packet_in.session_id = meta.session_id;
            sm.egress_spec = CPU_PORT;
        } else {
            sm.egress_spec = meta.out_port;
        }
    }
}

control DyscoEgress(inout headers_t hdr, inout dysco_meta_t meta, inout standard_metadata_t sm) {
    apply {
        if (sm.instance_type == INSTANCE_I2E_CLONE) {
            /* the copy of a RST, as it was received */
            hdr.packet_out.setInvalid();
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = meta.in_port;
            hdr.packet_in.pad0 = 0;
            hdr.packet_in.reason = REASON_TEARDOWN;
            hdr.packet_in.detail = 0;
            hdr.packet_in.policy_id = 0;
            hdr.packet_in.session_id = meta.session_id;
        }
    }
}

control DyscoComputeChecksum(inout headers_t hdr, inout dysco_meta_t meta) {
#include "include/checksum.p4"
    apply {
        DYSCO_COMPUTE_CHECKSUMS
    }
}

control DyscoDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.tcp_opt);
        pkt.emit(hdr.udp);
    }
}

V1Switch(DyscoParser(), DyscoVerifyChecksum(), DyscoIngress(), DyscoEgress(), DyscoComputeChecksum(),
         DyscoDeparser()) main;
