// error: bad_char.p4:3:14: syntax error: unexpected character
#include <core.p4>
const bit<8> ` = 1;
