// error: duplicate.p4:5:9: Ingress duplicates Ingress. (declared first at v1model.p4:153:9)
#include <core.p4>
#include <v1model.p4>
/* v1model.p4 declares the control type Ingress<H, M>; a program's control may not reuse the name. */
control Ingress(inout standard_metadata_t sm) { apply { } }
