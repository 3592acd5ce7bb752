/* Dysco data plane: the ingress logic (architecture independent).
 *
 * Included inside the body of the control named DyscoIngress with the parameters
 * `inout headers_t hdr` and `inout dysco_meta_t meta` (the control-plane names of the tables and
 * actions are therefore DyscoIngress.*).  The wrapper fills meta.in_port, meta.parser_ok and
 * meta.frame_length_bad, runs DYSCO_INGRESS_APPLY (include/translate.p4) and maps
 * meta.out_port / to_cpu / drop / copy_to_cpu to its architecture.
 */

action punt(bit<8> reason) {
    meta.to_cpu = 1;
    meta.reason = reason;
}

/* ---- the outbound-SYN classifier (entries from `dysco compile`) ---- */

action punt_policy(bit<16> policy_id) {
    punt(REASON_POLICY_SYN);
    meta.policy_id = policy_id;
}

action bypass() {
}

table classifier {
    key = {
        hdr.ipv4.src_addr: ternary;
        hdr.ipv4.dst_addr: ternary;
        hdr.ipv4.protocol: ternary;
        hdr.tcp.src_port: range;
        hdr.tcp.dst_port: range;
    }
    actions = { punt_policy; bypass; }
    const default_action = bypass();
    size = 4096;
}

/* ---- per-session tables ---- */

/* Translate the packet to the other side of the mapping.  Deltas are applied modulo 2^32:
 * seq_no += seq_delta; ack_no and SACK edges -= ack_delta; TSval += ts_val_delta;
 * TSecr += ts_ecr_delta (segments with ACK); window = window << ws_from >> ws_to (not on SYNs). */
action rewrite(bit<32> src_addr, bit<32> dst_addr, bit<16> src_port, bit<16> dst_port,
               bit<32> seq_delta, bit<32> ack_delta, bit<32> ts_val_delta, bit<32> ts_ecr_delta,
               bit<8> ws_from, bit<8> ws_to, bit<32> session_id) {
    meta.rewrite = 1;
    meta.new_src_addr = src_addr;
    meta.new_dst_addr = dst_addr;
    meta.new_src_port = src_port;
    meta.new_dst_port = dst_port;
    meta.seq_delta = seq_delta;
    meta.ack_delta = ack_delta;
    meta.ts_val_delta = ts_val_delta;
    meta.ts_ecr_delta = ts_ecr_delta;
    meta.ws_from = ws_from;
    meta.ws_to = ws_to;
    meta.session_id = session_id;
}

/* Every packet of the session goes to the agent, untouched (two-path phase). */
action punt_session(bit<32> session_id) {
    punt(REASON_TWO_PATH);
    meta.session_id = session_id;
}

/* Packets of the session are dropped (a spliced proxy's kernel still sending on its sockets). */
action drop_session() {
    meta.drop = 1;
}

table session_out {
    key = {
        hdr.ipv4.src_addr: exact;
        hdr.ipv4.dst_addr: exact;
        hdr.ipv4.protocol: exact;
        hdr.tcp.src_port: exact;
        hdr.tcp.dst_port: exact;
    }
    actions = { rewrite; punt_session; drop_session; @defaultonly NoAction; }
    const default_action = NoAction();
    support_timeout = true;
    size = DYSCO_SESSION_TABLE_SIZE;
}

table subsession_in {
    key = {
        hdr.ipv4.src_addr: exact;
        hdr.ipv4.dst_addr: exact;
        hdr.ipv4.protocol: exact;
        hdr.tcp.src_port: exact;
        hdr.tcp.dst_port: exact;
    }
    actions = { rewrite; punt_session; drop_session; @defaultonly NoAction; }
    const default_action = NoAction();
    support_timeout = true;
    size = DYSCO_SESSION_TABLE_SIZE;
}

/* ---- SYN-ACKs that come back before their session's entries are in ---- */

/* The agent sends a SYN on to the next hop while the writes of its entries are still under way;
 * the answer may overtake them.  A SYN-ACK from the network that misses subsession_in and is
 * addressed to a port the agent opens subsessions from goes to the agent, which translates it
 * in software (the agent writes one entry here: its subsession port range). */
action punt_setup_miss() {
    punt(REASON_SETUP_MISS);
}

table setup_ports {
    key = { hdr.tcp.dst_port: range; }
    actions = { punt_setup_miss; @defaultonly NoAction; }
    const default_action = NoAction();
    size = 4;
}
