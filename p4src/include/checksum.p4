/* Dysco data plane: checksums of rewritten packets (v1model externs, also in PSA-like form).
 * Included inside a control with `inout headers_t hdr, inout dysco_meta_t meta`.
 *
 * The IPv4 header checksum is recomputed over the header.  The TCP checksum is never summed
 * over the payload: translate.p4 fixes it incrementally (RFC 1624) into meta.tcp_sum, and the
 * new addresses (the pseudo header) are added here, so a target with checksum offload can tell
 * the pseudo header's change from the segment's (the ebpf back end of dysco switch does). */

#define DYSCO_COMPUTE_CHECKSUMS \
    update_checksum(meta.recompute == 1, \
        { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.total_len, \
          hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.frag_offset, hdr.ipv4.ttl, \
          hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr }, \
        hdr.ipv4.hdr_checksum, HashAlgorithm.csum16); \
    update_checksum(meta.recompute == 1, \
        { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, meta.tcp_sum }, \
        hdr.tcp.checksum, HashAlgorithm.csum16);
