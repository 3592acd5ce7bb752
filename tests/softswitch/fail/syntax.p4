// error: syntax.p4:5:1: syntax error: unexpected '}'
#include <core.p4>
header h_t {
    bit<8> a
}
header g_t { bit<8> b; }
