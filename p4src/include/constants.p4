/* Dysco data plane: ports, reason codes and other constants.
 * Every name and value here is mirrored in dysco/p4names.py (tests check they agree). */
#ifndef DYSCO_CONSTANTS_P4
#define DYSCO_CONSTANTS_P4

#include "bump.p4"

/* UDP destination port of Dysco control messages (punted to the agent). */
#ifndef DYSCO_CONTROL_PORT
#define DYSCO_CONTROL_PORT 9797
#endif
/* First four bytes of the TCP payload of a SYN that carries a Dysco payload ("DYSC"). */
#ifndef DYSCO_MAGIC
#define DYSCO_MAGIC 0x44595343
#endif
/* Clone session the agent maps to the CPU port: copies of RST segments (a FIN is punted). */
#ifndef DYSCO_TEARDOWN_SESSION
#define DYSCO_TEARDOWN_SESSION 100
#endif
/* The first four bytes of the option area of an in-band control segment (docs/protocol.md §4a):
 * TCP option kind 254 (RFC 6994 experimental), length 8, ExID 0x4459 ("DY"). */
#ifndef DYSCO_INBAND_OPTION
#define DYSCO_INBAND_OPTION 0xFE084459
#endif
/* TCP option kind the agent puts on a SYN it hands to a local middlebox application. */
#ifndef DYSCO_TAG_OPTION
#define DYSCO_TAG_OPTION 253
#endif

const bit<16> CONTROL_UDP_PORT = DYSCO_CONTROL_PORT;
const bit<32> TEARDOWN_CLONE_SESSION = DYSCO_TEARDOWN_SESSION;

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<8> PROTO_TCP = 6;
const bit<8> PROTO_UDP = 17;

/* packet_in.reason */
const bit<8> REASON_POLICY_SYN = 1;     /* outbound SYN matched the classifier; policy_id set */
const bit<8> REASON_DYSCO_SYN = 2;      /* inbound SYN whose payload starts with the Dysco magic */
const bit<8> REASON_CONTROL = 3;        /* UDP to the Dysco control port */
const bit<8> REASON_TWO_PATH = 4;       /* session punt: entry says punt (two-path phase, closing) or a FIN; session_id set */
const bit<8> REASON_TEARDOWN = 5;       /* copy of a RST of a session; session_id set */
const bit<8> REASON_UNSUPPORTED = 6;    /* session packet the fast path cannot translate; detail says why */
const bit<8> REASON_IP_UNSUPPORTED = 7; /* TCP in IPv4 with options or fragmented: no five-tuple lookup */
const bit<8> REASON_TAGGED_SYN = 8;     /* outbound SYN carrying the Dysco tag option */
const bit<8> REASON_SETUP_MISS = 9;     /* SYN-ACK from the network to a subsession port, no entry yet */
const bit<8> REASON_INBAND = 10;        /* TCP segment from the network whose options start with the in-band option */

/* packet_in.detail for REASON_UNSUPPORTED */
const bit<8> DETAIL_PARSER_ERROR = 1;   /* the parser stopped early (truncated packet) */
const bit<8> DETAIL_BAD_LENGTH = 2;     /* data offset < 5 or header longer than the IPv4 total length */
const bit<8> DETAIL_BAD_OPTION = 3;     /* option length < 2, wrong for its kind, past the header, duplicate */
const bit<8> DETAIL_MISALIGNED = 4;     /* timestamps or SACK edges not 32-bit aligned and need translating */
const bit<8> DETAIL_FRAME_LENGTH = 5;   /* frame longer (Ethernet padding) or shorter than the IPv4 packet */

/* Punt rate limits: one packet meter and one drop counter per reason (index = reason code).
 * An unconfigured meter is green (nothing is limited); the agent sets the rates. */
const bit<32> PUNT_REASONS = 16;
const bit<2> METER_RED = 2;

/* Dysco SYNs and control messages from agents the local agent authenticated (table known_peer)
 * are metered in a cell per agent instead of their reason's cell, so that a flood from other
 * sources does not take their budget.  Cells (and known_peer entries) at most: */
#ifndef DYSCO_PEER_CELLS
#define DYSCO_PEER_CELLS 64
#endif
const bit<32> PEER_CELLS = DYSCO_PEER_CELLS;

/* Entries of each session table (session_out, subsession_in): 2^20, so one NIC holds a million
 * sessions' entries in either direction.  The ebpf back end allocates an entry's memory when it
 * is written (BPF_F_NO_PREALLOC), so an empty table costs only its hash buckets. */
#ifndef DYSCO_SESSION_TABLE_SIZE
#define DYSCO_SESSION_TABLE_SIZE 1048576
#endif

/* packet_out.mode 2: send the frame out of packet_out.port as DIRECT does, and expect an answer:
 * the packet is a SYN the agent hands to its host before the writes of its session's entries are
 * answered; the host's SYN-ACK, should it miss session_out, is punted (REASON_SETUP_MISS) instead
 * of leaving untranslated.  An expectation is a cell of the register answer_expected, indexed by
 * a csum16 hash of the answer's five-tuple, holding a tag of it (docs/dataplane.md).
 * -DDYSCO_ANSWER_CELLS=0 builds the program without the register (mode 2 is then PIPELINE, as
 * any mode but 0 was before), and the agent hands SYNs to its host after their writes. */
#ifndef DYSCO_ANSWER_CELLS
#define DYSCO_ANSWER_CELLS 4096
#endif
#if DYSCO_ANSWER_CELLS > 0
const bit<8> PACKET_OUT_EXPECT_ANSWER = 2;
const bit<32> ANSWER_CELLS = DYSCO_ANSWER_CELLS;
#endif

/* standard_metadata.instance_type of an ingress-to-egress clone */
const bit<32> INSTANCE_I2E_CLONE = 1;

#endif
