/* Dysco data plane: the translation of one TCP segment, after a rewrite() hit.
 * Included in the DyscoIngress control body (after ingress.p4). */

/* One 32-bit word of the option area: SACK edges and timestamps (ts_word 0 and sack_lo 0 mean none).  Unrolled per word index,
 * since stack indices are constants. */
#define DYSCO_OPT_WORD(I) \
    if (hdr.tcp_opt[I].isValid()) { \
        if (meta.sack_lo <= I && I < meta.sack_hi) { \
            DYSCO_CSUM_CHANGE(hdr.tcp_opt[I].data, hdr.tcp_opt[I].data - meta.ack_delta) \
        } else if (meta.ts_word != 0 && meta.ts_word == I) { \
            DYSCO_CSUM_CHANGE(hdr.tcp_opt[I].data, hdr.tcp_opt[I].data + meta.ts_val_delta) \
        } else if (meta.ts_word != 0 && meta.ts_word + 1 == I && (hdr.tcp.flags & TCP_ACK) != 0) { \
            DYSCO_CSUM_CHANGE(hdr.tcp_opt[I].data, hdr.tcp_opt[I].data + meta.ts_ecr_delta) \
        } \
    }

/* The TCP checksum, fixed incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')) over every
 * 16-bit word the translation may change, never summed over the payload: padded frames and GSO
 * packets are translated like any other, and the sum maps onto a residual checksum unit
 * (Tofino) later.  DYSCO_CSUM_OLD runs before the rewrite, DYSCO_CSUM_NEW after it (option
 * words go out and in where DYSCO_OPT_WORD changes them, so no branch is added); the new
 * addresses are added by update_checksum in checksum.p4, so a target with checksum offload
 * sees the pseudo header's change there. */
#define DYSCO_CSUM_SUB32(X) meta.csum_acc = meta.csum_acc + (bit<32>)(~X[31:16]) + (bit<32>)(~X[15:0]);
#define DYSCO_CSUM_ADD32(X) meta.csum_acc = meta.csum_acc + (bit<32>)X[31:16] + (bit<32>)X[15:0];
#define DYSCO_CSUM_TCP(OP, OP16) \
    OP16(hdr.tcp.src_port) OP16(hdr.tcp.dst_port) OP(hdr.tcp.seq_no) OP(hdr.tcp.ack_no) OP16(hdr.tcp.window)
/* an option word changed by DYSCO_OPT_WORD: its old value out of the sum, the new one in */
#define DYSCO_CSUM_CHANGE(X, NEW) DYSCO_CSUM_SUB32(X) X = NEW; DYSCO_CSUM_ADD32(X)
#define DYSCO_CSUM_SUB16(X) meta.csum_acc = meta.csum_acc + (bit<32>)(~X);
#define DYSCO_CSUM_ADD16(X) meta.csum_acc = meta.csum_acc + (bit<32>)X;
#define DYSCO_CSUM_OLD \
    meta.csum_acc = (bit<32>)(~hdr.tcp.checksum); \
    DYSCO_CSUM_SUB32(hdr.ipv4.src_addr) DYSCO_CSUM_SUB32(hdr.ipv4.dst_addr) \
    DYSCO_CSUM_TCP(DYSCO_CSUM_SUB32, DYSCO_CSUM_SUB16)
#define DYSCO_CSUM_NEW \
    DYSCO_CSUM_TCP(DYSCO_CSUM_ADD32, DYSCO_CSUM_ADD16) \
    meta.csum_acc = (meta.csum_acc & 0xFFFF) + (meta.csum_acc >> 16); \
    meta.csum_acc = (meta.csum_acc & 0xFFFF) + (meta.csum_acc >> 16); \
    meta.tcp_sum = meta.csum_acc[15:0];

action translate_tuple() {
    hdr.ipv4.src_addr = meta.new_src_addr;
    hdr.ipv4.dst_addr = meta.new_dst_addr;
    hdr.tcp.src_port = meta.new_src_port;
    hdr.tcp.dst_port = meta.new_dst_port;
    hdr.tcp.seq_no = hdr.tcp.seq_no + meta.seq_delta;
    meta.recompute = 1;
}

/* The part of DyscoIngress's apply block that runs after a rewrite() hit. */
#define DYSCO_TRANSLATE \
    if (meta.parser_ok == 0) { \
        meta.detail = DETAIL_PARSER_ERROR; \
    } else if (meta.tcp_bad_len == 1) { \
        meta.detail = DETAIL_BAD_LENGTH; \
    } else if (meta.opt_bad == 1) { \
        meta.detail = DETAIL_BAD_OPTION; \
    } else if ((meta.ts_misaligned == 1 && (meta.ts_val_delta != 0 || meta.ts_ecr_delta != 0)) \
               || (meta.sack_misaligned == 1 && meta.ack_delta != 0)) { \
        meta.detail = DETAIL_MISALIGNED; \
    } else if (meta.frame_length_bad == 1) { \
        meta.detail = DETAIL_FRAME_LENGTH; \
    } \
    if (meta.detail != 0) { \
        punt(REASON_UNSUPPORTED); \
    } else if ((hdr.tcp.flags & TCP_FIN) != 0) { \
        /* the agent forwards a FIN itself: it must know the session is closing before \
         * anything that answers the FIN can arrive (docs/protocol.md, "Teardown") */ \
        punt(REASON_TWO_PATH); \
    } else { \
        DYSCO_CSUM_OLD \
        translate_tuple(); \
        if ((hdr.tcp.flags & TCP_ACK) != 0) { \
            hdr.tcp.ack_no = hdr.tcp.ack_no - meta.ack_delta; \
        } \
        if ((hdr.tcp.flags & TCP_SYN) == 0 && meta.ws_from != meta.ws_to) { \
            bit<32> win = ((bit<32>)hdr.tcp.window << meta.ws_from) >> meta.ws_to; \
            if (win > 0xFFFF) { \
                win = 0xFFFF; \
            } \
            hdr.tcp.window = win[15:0]; \
        } \
        DYSCO_OPT_WORD(0) DYSCO_OPT_WORD(1) DYSCO_OPT_WORD(2) DYSCO_OPT_WORD(3) DYSCO_OPT_WORD(4) \
        DYSCO_OPT_WORD(5) DYSCO_OPT_WORD(6) DYSCO_OPT_WORD(7) DYSCO_OPT_WORD(8) DYSCO_OPT_WORD(9) \
        DYSCO_CSUM_NEW \
        if ((hdr.tcp.flags & TCP_RST) != 0) { \
            meta.copy_to_cpu = 1; \
        } \
    }

/* The whole Dysco decision for one packet (apply-block statements). */
#define DYSCO_INGRESS_APPLY \
    if (meta.in_port == HOST_PORT) { \
        meta.out_port = NET_PORT; \
    } else if (meta.in_port == NET_PORT) { \
        meta.out_port = HOST_PORT; \
    } else { \
        meta.drop = 1; \
    } \
    if (meta.drop == 0) { \
        if (hdr.udp.isValid() && hdr.udp.dst_port == CONTROL_UDP_PORT) { \
            punt(REASON_CONTROL); \
        } else if (meta.ip_unsupported == 1) { \
            punt(REASON_IP_UNSUPPORTED); \
        } else if (hdr.tcp.isValid()) { \
            bool syn_only = (hdr.tcp.flags & (TCP_SYN | TCP_ACK)) == TCP_SYN; \
            if (meta.in_port == HOST_PORT) { \
                if (syn_only && meta.tagged == 1) { \
                    punt(REASON_TAGGED_SYN); \
                } else if (session_out.apply().hit) { \
                    if (syn_only && meta.drop == 1) { \
                        /* a new connection on the port of a spliced socket: not a leftover */ \
                        meta.drop = 0; \
                        classifier.apply(); \
                    } \
                } else if (syn_only) { \
                    classifier.apply(); \
                } else if ((hdr.tcp.flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) { \
                    /* the wrapper punts it if the agent expects it (an answer to an early SYN) */ \
                    meta.host_answer_miss = 1; \
                } \
            } else { \
                if (meta.inband == 1) { \
                    /* a control message between agents: never the host's, whatever its flags */ \
                    punt(REASON_INBAND); \
                } else if (syn_only && meta.dysco_syn == 1) { \
                    punt(REASON_DYSCO_SYN); \
                } else if (!subsession_in.apply().hit && \
                           (hdr.tcp.flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) { \
                    setup_ports.apply(); \
                } \
            } \
            if (meta.rewrite == 1) { \
                DYSCO_TRANSLATE \
            } \
        } \
    }
