/* Dysco data plane: headers and metadata (architecture independent). */
#ifndef DYSCO_HEADERS_P4
#define DYSCO_HEADERS_P4

#include "constants.p4"

/* Maximum TCP option area: 40 bytes = 10 words. */
#define TCP_OPT_WORDS 10

header ipv4_h {
    bit<4> version;
    bit<4> ihl;
    bit<8> diffserv;
    bit<16> total_len;
    bit<16> identification;
    bit<3> flags;
    bit<13> frag_offset;
    bit<8> ttl;
    bit<8> protocol;
    bit<16> hdr_checksum;
    bit<32> src_addr;
    bit<32> dst_addr;
}

header tcp_h {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4> data_offset;
    bit<4> res;
    bit<8> flags;
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

/* The TCP option area is kept as 32-bit words, so it deparses byte for byte as it came in
 * and the checksum covers exactly the words present.  The parser walks the options and
 * records which words hold the timestamps and the SACK edges. */
header tcp_opt_word_h {
    bit<32> data;
}

header udp_h {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> length;
    bit<16> checksum;
}

struct headers_t {
    packet_in_h packet_in;
    packet_out_h packet_out;
    ethernet_h ethernet;
    ipv4_h ipv4;
    tcp_h tcp;
    tcp_opt_word_h[TCP_OPT_WORDS] tcp_opt;
    udp_h udp;
}

const bit<8> TCP_FIN = 0x01;
const bit<8> TCP_SYN = 0x02;
const bit<8> TCP_RST = 0x04;
const bit<8> TCP_ACK = 0x10;

struct dysco_meta_t {
    /* set by the architecture wrapper before the Dysco logic runs */
    @field_list(1)
    bit<9> in_port;          /* ingress port, or packet_out.port in pipeline mode */
    bit<1> parser_ok;        /* the parser finished without error */
    bit<1> frame_length_bad; /* the frame is shorter than Ethernet + the IPv4 packet (cut off) */

    /* set by the parser */
    bit<16> l4_len;          /* ipv4.total_len - 4 * ihl */
    bit<17> payload_len;     /* l4_len - 4 * data_offset; bit 16 set if negative */
    bit<1> ip_unsupported;   /* TCP in IPv4 with options or fragmented */
    bit<1> tcp_bad_len;
    bit<1> opt_bad;
    bit<1> dysco_syn;        /* SYN payload starts with the Dysco magic */
    bit<1> tagged;           /* carries the Dysco tag option */
    bit<1> inband;           /* the option area starts with the in-band control option */
    bit<8> opt_rem;          /* option bytes not walked yet */
    bit<8> opt_kind;
    bit<8> opt_len;
    bit<8> opt_phase;        /* byte offset of the current option in its word */
    bit<8> opt_word;         /* words of the option area extracted so far */
    bit<8> opt_skip;         /* words to extract before the next option */
    bit<8> ts_word;          /* word of TSval (TSecr is the next one); 0: none */
    bit<1> ts_misaligned;
    bit<8> sack_lo;          /* first word of SACK edges; 0: none */
    bit<8> sack_hi;          /* one past the last word of SACK edges */
    bit<1> sack_misaligned;

    /* decisions of the Dysco logic, mapped to the architecture by the wrapper */
    bit<9> out_port;
    bit<1> drop;
    bit<1> to_cpu;
    bit<1> copy_to_cpu;      /* clone the packet as received to the teardown session */
    bit<1> recompute;        /* headers rewritten: recompute IPv4 and TCP checksums */
    bit<32> csum_acc;        /* RFC 1624: ~checksum + ~old words + new words, unfolded */
    bit<16> tcp_sum;         /* ... folded, without the new addresses (checksum.p4 adds them) */
    bit<8> reason;
    bit<8> detail;
    bit<16> policy_id;
    @field_list(1)
    bit<32> session_id;
    bit<32> peer_cell;       /* known_peer: the source's cell of peer_meter */
    bit<1> host_answer_miss; /* a SYN-ACK from HOST that missed session_out */

    /* parameters of a session's rewrite action */
    bit<1> rewrite;
    bit<32> new_src_addr;
    bit<32> new_dst_addr;
    bit<16> new_src_port;
    bit<16> new_dst_port;
    bit<32> seq_delta;
    bit<32> ack_delta;
    bit<32> ts_val_delta;
    bit<32> ts_ecr_delta;
    bit<8> ws_from;
    bit<8> ws_to;
}

#endif
