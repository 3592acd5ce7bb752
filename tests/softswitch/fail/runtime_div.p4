// error: runtime_div.p4:10:17: h.h.a / 3: could not evaluate expression at compilation time
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; }
struct hs { h_t h; }
control I(inout hs h) {
    const bit<8> EIGHT = 8;
    apply {
        h.h.a = h.h.a / EIGHT + h.h.a % 4 + (EIGHT + 8) / 3;  /* all right: powers of two, folded */
        h.h.a = h.h.a / 3;
    }
}
