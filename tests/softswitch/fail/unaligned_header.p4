// error: unaligned_header.p4:3:1: not supported by softswitch: header h_t is 7 bits, not whole bytes
#include <core.p4>
header h_t { bit<7> a; }
