/* Dysco data plane: parser states from Ethernet on (architecture independent).
 *
 * Included inside the body of a parser with the parameters `packet_in pkt`, `out headers_t hdr`
 * and `inout dysco_meta_t meta`; the wrapper's start state transitions to `parse_ethernet`.
 *
 * The TCP option walk is bounded: at most 40 option bytes, one loop iteration per option.  It
 * extracts the option area as 32-bit words and records where the timestamps and the SACK edges
 * are.  Whatever it cannot make sense of sets meta.opt_bad; the packet is still forwarded byte for
 * byte, but never translated.
 */

bit<40> la;  /* lookahead window: every state writes all of it (zero-extended), reads la[7:0] */

state parse_ethernet {
    pkt.extract(hdr.ethernet);
    transition select(hdr.ethernet.ether_type) {
        ETHERTYPE_IPV4: parse_ipv4;
        default: accept;
    }
}

state parse_ipv4 {
    pkt.extract(hdr.ipv4);
    meta.l4_len = hdr.ipv4.total_len - ((bit<16>)hdr.ipv4.ihl << 2);
    transition select(hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.flags[0:0], hdr.ipv4.frag_offset,
                      hdr.ipv4.protocol) {
        (4, 5, 0, 0, PROTO_TCP): parse_tcp;
        (4, 5, 0, 0, PROTO_UDP): parse_udp;
        (4, 0 .. 4, _, _, _): accept;          /* malformed IHL: forwarded untouched */
        (4, _, _, _, PROTO_TCP): ip_unsupported;
        default: accept;
    }
}

state ip_unsupported {
    meta.ip_unsupported = 1;
    transition accept;
}

state parse_udp {
    pkt.extract(hdr.udp);
    transition accept;
}

state parse_tcp {
    pkt.extract(hdr.tcp);
    meta.payload_len = (bit<17>)meta.l4_len - ((bit<17>)hdr.tcp.data_offset << 2);
    meta.opt_rem = ((bit<8>)hdr.tcp.data_offset << 2) - 20;
    /* total_len is compared, not l4_len's top bit: a GSO packet (TSO on at the sender, up to
     * 64 KB) has total_len >= 32 KB and is well formed */
    transition select(hdr.tcp.data_offset, hdr.ipv4.total_len, meta.payload_len[16:16]) {
        (0 .. 4, _, _): tcp_bad_len;
        (_, 0 .. 19, _): tcp_bad_len;          /* total_len shorter than the IPv4 header */
        (_, _, 1): tcp_bad_len;                /* TCP header longer than the IPv4 packet */
        (5, _, _): tcp_options_done;
        default: check_inband;
    }
}

/* An in-band control segment carries its option first (docs/dataplane.md, "In-band control"). */
state check_inband {
    transition select(pkt.lookahead<bit<32>>()) {
        DYSCO_INBAND_OPTION: inband;
        default: opt_next;
    }
}

state inband {
    meta.inband = 1;
    transition opt_next;
}

state tcp_bad_len {
    meta.tcp_bad_len = 1;
    transition accept;
}

/* ---- the option walk ---- */

state opt_next {
    transition select(meta.opt_rem) {
        0: tcp_options_done;
        default: opt_kind_dispatch;
    }
}

state opt_kind_dispatch {
    transition select(meta.opt_phase) {
        0: opt_kind_0;
        1: opt_kind_1;
        2: opt_kind_2;
        default: opt_kind_3;
    }
}

state opt_kind_0 { meta.opt_kind = pkt.lookahead<bit<8>>(); transition opt_kind; }
state opt_kind_1 { la = (bit<40>)pkt.lookahead<bit<16>>(); meta.opt_kind = la[7:0]; transition opt_kind; }
state opt_kind_2 { la = (bit<40>)pkt.lookahead<bit<24>>(); meta.opt_kind = la[7:0]; transition opt_kind; }
state opt_kind_3 { la = (bit<40>)pkt.lookahead<bit<32>>(); meta.opt_kind = la[7:0]; transition opt_kind; }

state opt_kind {
    transition select(meta.opt_kind) {
        0: opt_eol;
        1: opt_nop;
        default: opt_len_dispatch;
    }
}

state opt_eol {
    meta.opt_len = meta.opt_rem;               /* the rest of the area is padding */
    transition opt_advance;
}

state opt_nop {
    meta.opt_len = 1;
    transition opt_advance;
}

state opt_len_dispatch {
    transition select(meta.opt_phase) {
        0: opt_len_0;
        1: opt_len_1;
        2: opt_len_2;
        default: opt_len_3;
    }
}

state opt_len_0 { la = (bit<40>)pkt.lookahead<bit<16>>(); meta.opt_len = la[7:0]; transition opt_classify; }
state opt_len_1 { la = (bit<40>)pkt.lookahead<bit<24>>(); meta.opt_len = la[7:0]; transition opt_classify; }
state opt_len_2 { la = (bit<40>)pkt.lookahead<bit<32>>(); meta.opt_len = la[7:0]; transition opt_classify; }
state opt_len_3 { la = pkt.lookahead<bit<40>>(); meta.opt_len = la[7:0]; transition opt_classify; }

state opt_classify {
    transition select(meta.opt_kind, meta.opt_len, meta.opt_phase) {
        (_, 0 .. 1, _): opt_bad;
        (2, 4, _): opt_advance;                 /* MSS */
        (2, _, _): opt_bad;
        (3, 3, _): opt_advance;                 /* window scale */
        (3, _, _): opt_bad;
        (4, 2, _): opt_advance;                 /* SACK permitted */
        (4, _, _): opt_bad;
        (5, 10, 2): opt_sack_1;
        (5, 18, 2): opt_sack_2;
        (5, 26, 2): opt_sack_3;
        (5, 34, 2): opt_sack_4;
        (5, 10, _): opt_sack_misaligned;
        (5, 18, _): opt_sack_misaligned;
        (5, 26, _): opt_sack_misaligned;
        (5, 34, _): opt_sack_misaligned;
        (5, _, _): opt_bad;
        (8, 10, 2): opt_ts;
        (8, 10, _): opt_ts_misaligned;
        (8, _, _): opt_bad;
        (DYSCO_TAG_OPTION, _, _): opt_tag;
        default: opt_advance;                   /* other options are skipped and kept as they are */
    }
}

state opt_tag {
    meta.tagged = 1;
    transition opt_advance;
}

state opt_ts {
    transition select(meta.ts_word, meta.ts_misaligned) {
        (0, 0): opt_ts_set;
        default: opt_bad;                       /* a second timestamps option */
    }
}

state opt_ts_set {
    meta.ts_word = meta.opt_word + 1;
    transition opt_advance;
}

state opt_ts_misaligned {
    transition select(meta.ts_word, meta.ts_misaligned) {
        (0, 0): opt_ts_misaligned_set;
        default: opt_bad;
    }
}

state opt_ts_misaligned_set {
    meta.ts_misaligned = 1;
    transition opt_advance;
}

state opt_sack_1 { meta.opt_skip = 2; transition opt_sack; }
state opt_sack_2 { meta.opt_skip = 4; transition opt_sack; }
state opt_sack_3 { meta.opt_skip = 6; transition opt_sack; }
state opt_sack_4 { meta.opt_skip = 8; transition opt_sack; }

state opt_sack {
    transition select(meta.sack_lo, meta.sack_misaligned) {
        (0, 0): opt_sack_set;
        default: opt_bad;                       /* a second SACK option */
    }
}

state opt_sack_set {
    meta.sack_lo = meta.opt_word + 1;
    meta.sack_hi = meta.opt_word + 1 + meta.opt_skip;
    transition opt_advance;
}

state opt_sack_misaligned {
    transition select(meta.sack_lo, meta.sack_misaligned) {
        (0, 0): opt_sack_misaligned_set;
        default: opt_bad;
    }
}

state opt_sack_misaligned_set {
    meta.sack_misaligned = 1;
    transition opt_advance;
}

/* Consume the current option: it ends opt_len bytes after its start. */
state opt_advance {
    transition select(((bit<16>)meta.opt_rem - (bit<16>)meta.opt_len)[15:8]) {
        0: opt_consume;
        default: opt_bad;                       /* runs past the option area */
    }
}

state opt_consume {
    meta.opt_rem = meta.opt_rem - meta.opt_len;
    meta.opt_skip = (meta.opt_phase + meta.opt_len) >> 2;
    meta.opt_phase = (meta.opt_phase + meta.opt_len) & 3;
    transition opt_skip;
}

state opt_skip {
    transition select(meta.opt_skip) {
        0: opt_next;
        default: opt_take_word;
    }
}

state opt_take_word {
    pkt.extract(hdr.tcp_opt.next);
    meta.opt_skip = meta.opt_skip - 1;
    meta.opt_word = meta.opt_word + 1;
    transition opt_skip;
}

/* Take the remaining words of the area untouched and stop walking. */
state opt_bad {
    meta.opt_bad = 1;
    meta.opt_skip = ((bit<8>)hdr.tcp.data_offset - 5) - meta.opt_word;
    transition opt_bad_take;
}

state opt_bad_take {
    transition select(meta.opt_skip) {
        0: tcp_options_done;
        default: opt_bad_word;
    }
}

state opt_bad_word {
    pkt.extract(hdr.tcp_opt.next);
    meta.opt_skip = meta.opt_skip - 1;
    meta.opt_word = meta.opt_word + 1;
    transition opt_bad_take;
}

/* ---- after the options: is it a SYN carrying a Dysco payload? ---- */

state tcp_options_done {
    transition select(hdr.tcp.flags & (TCP_SYN | TCP_ACK), meta.payload_len[15:2]) {
        (TCP_SYN, 0): accept;                   /* fewer than 4 payload bytes */
        (TCP_SYN, _): check_magic;
        default: accept;
    }
}

state check_magic {
    transition select(pkt.lookahead<bit<32>>()) {
        DYSCO_MAGIC: dysco_syn;
        default: accept;
    }
}

state dysco_syn {
    meta.dysco_syn = 1;
    transition accept;
}
