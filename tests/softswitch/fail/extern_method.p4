// error: extern_method.p4:9:17: regs.read: extern register does not have method matching this call
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; }
struct hs { h_t h; }
control I(inout hs h) {
    register<bit<8>>(4) regs;
    apply {
        h.h.a = regs.read(32w1);  /* v1model's register has only read(out T, in I) */
    }
}
