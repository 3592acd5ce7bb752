/* Dysco data plane: checksums of rewritten packets (v1model externs, also in PSA-like form).
 * Included inside a control with `inout headers_t hdr, inout dysco_meta_t meta`.
 *
 * The TCP checksum covers the pseudo header, the TCP header, exactly the option words present
 * (one call per option-area length, so no invalid header is ever part of a list) and the payload.
 * Generated layout, kept by hand: DYSCO_TCP_CSUM(N) lists words 0 .. N-1. */

#define DYSCO_TCP_PSEUDO \
    hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len, \
    hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no, hdr.tcp.data_offset, \
    hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window, hdr.tcp.urgent_ptr

#define DYSCO_TCP_CSUM_0 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 5, \
        { DYSCO_TCP_PSEUDO }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_1 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 6, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_2 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 7, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_3 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 8, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_4 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 9, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data, hdr.tcp_opt[3].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_5 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 10, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data, hdr.tcp_opt[3].data, hdr.tcp_opt[4].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_6 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 11, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data, hdr.tcp_opt[3].data, hdr.tcp_opt[4].data, hdr.tcp_opt[5].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_7 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 12, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data, hdr.tcp_opt[3].data, hdr.tcp_opt[4].data, hdr.tcp_opt[5].data, hdr.tcp_opt[6].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_8 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 13, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data, hdr.tcp_opt[3].data, hdr.tcp_opt[4].data, hdr.tcp_opt[5].data, hdr.tcp_opt[6].data, hdr.tcp_opt[7].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_9 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 14, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data, hdr.tcp_opt[3].data, hdr.tcp_opt[4].data, hdr.tcp_opt[5].data, hdr.tcp_opt[6].data, hdr.tcp_opt[7].data, hdr.tcp_opt[8].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_TCP_CSUM_10 \
    update_checksum_with_payload(meta.recompute == 1 && hdr.tcp.data_offset == 15, \
        { DYSCO_TCP_PSEUDO, hdr.tcp_opt[0].data, hdr.tcp_opt[1].data, hdr.tcp_opt[2].data, hdr.tcp_opt[3].data, hdr.tcp_opt[4].data, hdr.tcp_opt[5].data, hdr.tcp_opt[6].data, hdr.tcp_opt[7].data, hdr.tcp_opt[8].data, hdr.tcp_opt[9].data }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);

#define DYSCO_COMPUTE_CHECKSUMS \
    update_checksum(meta.recompute == 1, \
        { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.total_len, \
          hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.frag_offset, hdr.ipv4.ttl, \
          hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr }, \
        hdr.ipv4.hdr_checksum, HashAlgorithm.csum16); \
    DYSCO_TCP_CSUM_0 DYSCO_TCP_CSUM_1 DYSCO_TCP_CSUM_2 DYSCO_TCP_CSUM_3 DYSCO_TCP_CSUM_4 DYSCO_TCP_CSUM_5 DYSCO_TCP_CSUM_6 DYSCO_TCP_CSUM_7 DYSCO_TCP_CSUM_8 DYSCO_TCP_CSUM_9 DYSCO_TCP_CSUM_10
