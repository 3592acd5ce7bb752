// error: unknown_type.p4:4:5: unknown type 'foo_t'
#include <core.p4>
struct s_t {
    foo_t x;
}
