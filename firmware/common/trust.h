/* What this firmware trusts (docs/firmware.md, "Signed installs"): the keys that may sign the models it installs
 * and the vendor and device-class ids their manifests must name. A const table generated at build time
 * (build/firmware/<board>/trust.c, by tinymlaas.devices.firmware_trust from `make TRUST_ANCHOR=owner.pub`, or from
 * a development key made in the build directory); nothing secret is in it. */
#ifndef TRUST_H
#define TRUST_H

#include <stdint.h>

#include "tml_cose.h"

extern const tml_anchor trust_anchors[];
extern const uint32_t trust_anchor_count;
extern const uint8_t trust_vendor_id[16];
extern const uint8_t trust_class_id[16];

/* What it trusts now (trust_state.c): the build's table, until a signed anchor update (docs/firmware.md, "Trust
 * anchor updates") replaced it with the set kept in non-volatile memory (nvstate.h). */
const tml_anchor *trust_now(uint32_t *n);
uint64_t trust_anchor_sequence(void); /* the last update taken, 0: none */
/* Take an anchor update (a COSE_Sign1 signed by a key trusted now): NULL once the new set is kept, or the reason;
 * *storage is set when the reason is the memory's (no memory, a failed write), not the update's. */
const char *trust_update(const uint8_t *env, uint32_t len, int *storage);

#endif
