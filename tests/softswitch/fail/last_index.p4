// error: last_index.p4:9:29: h.stk.lastIndex: 'lastIndex' for stacks can only be used in a parser
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; }
struct hs { h_t[3] stk; h_t other; }
control I(inout hs h) {
    apply {
        h.other.a = (bit<8>)h.stk[0].a;  /* an element is fine anywhere */
        h.other.a = (bit<8>)h.stk.lastIndex;
    }
}
