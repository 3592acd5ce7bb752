// error: extern_type_args.p4:8:5: register<bit<8>, bit<32>>: Type register has 1 type parameter(s), but it is specialized with 2
#include <core.p4>
#include <v1model.p4>
/* register<T, I> is the 2020 v1model's; without V1MODEL_VERSION 20200408 it is register<T>. */
header h_t { bit<8> a; }
struct hs { h_t h; }
control I(inout hs h) {
    register<bit<8>, bit<32>>(4) regs;
    apply { regs.read(h.h.a, 1); }
}
