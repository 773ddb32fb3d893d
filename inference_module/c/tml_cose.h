/* The signed model manifest (docs/manifest.md): its COSE_Sign1 envelope (RFC 9052 §4.2, ES256 only) and the
 * manifest map inside it. The parser checks every length before it reads, accepts only the deterministic encoding
 * the host writes (the same rule as the host and MicroPython readers), and keeps pointers into the caller's buffer
 * instead of copying. Every function returns NULL on success or a short reason (the strings docs/manifest.md
 * lists, shared with the other two readers). */
#ifndef TML_COSE_H
#define TML_COSE_H

#include <stdint.h>

#define TML_KID_BYTES 8
#define TML_ENVELOPE_MAX_BYTES 512u
#define TML_MANIFEST_TEXT_MAX 64u

typedef struct {
    uint8_t kid[TML_KID_BYTES]; /* first 8 bytes of SHA-256(point) */
    uint8_t point[65];          /* SEC 1 uncompressed public key */
} tml_anchor;

typedef struct {
    const uint8_t *p; /* into the envelope: not NUL-terminated */
    uint32_t len;
} tml_text;

typedef struct {
    uint64_t sequence;
    uint8_t vendor_id[16];
    uint8_t class_id[16];
    tml_text component, name, version;
    uint8_t blob_sha256[32];
    uint32_t blob_bytes;
    uint8_t vectors_sha256[32];
} tml_manifest;

/* What a model slot last installed: the anti-rollback state the device keeps (in flash, with the active pointer). */
typedef struct {
    uint64_t sequence;
    uint8_t blob_sha256[32];
} tml_installed;

/* Check the envelope, find its kid among `anchors`, verify the ES256 signature, then parse the manifest. */
const char *tml_cose_verify(const uint8_t *env, uint32_t len, const tml_anchor *anchors, uint32_t n_anchors,
                            tml_manifest *out);

/* The envelope checks and the signature of tml_cose_verify, without parsing the payload: *payload points into env. */
const char *tml_cose_verify_payload(const uint8_t *env, uint32_t len, const tml_anchor *anchors, uint32_t n_anchors,
                                    const uint8_t **payload, uint32_t *payload_len);

/* A trust-anchor update (docs/manifest.md, "Key rotation"): {1: 1, 2: sequence, 3: vendor id, 4: new anchor point,
 * ?5: kid to drop}, deterministically encoded, the point on the curve; else "malformed anchor update". */
typedef struct {
    uint64_t sequence;
    uint8_t vendor_id[16];
    uint8_t point[65];
    int has_revoke;
    uint8_t revoke[TML_KID_BYTES];
} tml_anchor_update;
const char *tml_anchor_update_parse(const uint8_t *payload, uint32_t len, tml_anchor_update *out);

/* The manifest map alone (what tml_cose_verify parses after the signature verified). */
const char *tml_manifest_parse(const uint8_t *payload, uint32_t len, tml_manifest *out);

/* Is this manifest for this device, and not older than what the slot has? `installed` NULL: nothing installed yet.
 * The sequence number must grow; the same number is accepted only for the very same blob (a re-install). */
const char *tml_manifest_admit(const tml_manifest *m, const uint8_t vendor_id[16], const uint8_t class_id[16],
                               const tml_installed *installed);

#endif
