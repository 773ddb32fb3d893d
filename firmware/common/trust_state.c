/* Trust anchors that follow a key rotation (trust.h): the firmware takes the anchor updates the MicroPython device
 * takes at /32770/0/29 (inference_module/tinyml/anchors.py; format in docs/manifest.md, "Key rotation"), with the
 * same checks in the same order and the same refusal words, and keeps the resulting set in nvstate's records. */
#include <string.h>

#include "nvstate.h"
#include "tml.h"
#include "trust.h"

const tml_anchor *trust_now(uint32_t *n)
{
    const nv_state *st = nvstate();
    if (st->n_anchors && st->n_anchors <= NV_MAX_ANCHORS) {
        *n = st->n_anchors;
        return st->anchors;
    }
    *n = trust_anchor_count;
    return trust_anchors;
}

uint64_t trust_anchor_sequence(void) { return nvstate()->anchor_sequence; }

const char *trust_update(const uint8_t *env, uint32_t len, int *storage)
{
    nv_state *next;
    tml_anchor_update u;
    tml_sha256 h;
    uint8_t kid[32];
    const uint8_t *payload;
    uint32_t plen, n, k;
    const tml_anchor *now = trust_now(&n);
    const char *why;
    *storage = 1;
    if (!nvstate_available())
        return "no non-volatile memory to keep trust anchors in";
    *storage = 0;
    if ((why = tml_cose_verify_payload(env, len, now, n, &payload, &plen)) ||
        (why = tml_anchor_update_parse(payload, plen, &u)))
        return why;
    if (memcmp(u.vendor_id, trust_vendor_id, 16))
        return "wrong vendor";
    if (u.sequence <= trust_anchor_sequence())
        return "rollback";
    tml_sha256_init(&h);
    tml_sha256_update(&h, u.point, 65);
    tml_sha256_final(&h, kid);
    if (u.has_revoke && !memcmp(u.revoke, kid, TML_KID_BYTES))
        return "malformed anchor update"; /* it would drop the anchor it adds */
    next = nvstate_edit();
    next->n_anchors = 0;
    for (k = 0; k < n; k++) /* the set now, less the revoked key and an older entry of the new one */
        if (memcmp(now[k].kid, kid, TML_KID_BYTES) && !(u.has_revoke && !memcmp(now[k].kid, u.revoke, TML_KID_BYTES))) {
            if (next->n_anchors == NV_MAX_ANCHORS)
                return "too many anchors";
            next->anchors[next->n_anchors++] = now[k];
        }
    if (next->n_anchors == NV_MAX_ANCHORS)
        return "too many anchors";
    memcpy(next->anchors[next->n_anchors].kid, kid, TML_KID_BYTES);
    memcpy(next->anchors[next->n_anchors].point, u.point, 65);
    next->n_anchors++;
    next->anchor_sequence = u.sequence;
    *storage = 1;
    return nvstate_put(next);
}
