/* Shared by the STF programs: Ethernet and a v1model skeleton's empty blocks. */
#include <core.p4>
#include <v1model.p4>

header ethernet_t {
    bit<48> dst;
    bit<48> src;
    bit<16> etherType;
}

/* A program that has its own checksum blocks or egress defines STF_OWN_CHECKSUMS or STF_OWN_EGRESS
 * first: p4c warns about a declared control nobody uses. */
#ifndef STF_OWN_CHECKSUMS
control NoVerify<H, M>(inout H hdr, inout M meta) { apply { } }
control NoCompute<H, M>(inout H hdr, inout M meta) { apply { } }
#endif
#ifndef STF_OWN_EGRESS
control NoEgress<H, M>(inout H hdr, inout M meta, inout standard_metadata_t sm) { apply { } }
#endif
