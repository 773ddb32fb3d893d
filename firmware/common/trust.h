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

#endif
