// error: duplicate_header.p4:4:8: h_t duplicates h_t. (declared first at duplicate_header.p4:3:8)
#include <core.p4>
header h_t { bit<8> a; }
header h_t { bit<16> b; }
