/* COSE_Sign1 + manifest reader (tml_cose.h). A CBOR item is read as a head (major type, argument) and, for byte
 * and text strings, the bytes that follow; only what the profile in docs/manifest.md allows is accepted:
 *   - heads in their shortest form, definite lengths (RFC 8949 §4.2.1), no floats or simple values;
 *   - the envelope #6.18([bstr .cbor {1: -7, 4: bstr .size 8}, {}, bstr .cbor manifest, bstr .size 64]);
 *   - the manifest's keys 1..10 in order, each with its one type; texts printable ASCII, 1..64 bytes. */
#include "tml_cose.h"

#include <string.h>

#include "tml.h"
#include "tml_p256.h"

#define R_MALFORMED "malformed COSE_Sign1"
#define R_ALG "unsupported algorithm"
#define R_KEY "unknown key"
#define R_SIGNATURE "bad signature"
#define R_MANIFEST "malformed manifest"
#define R_VERSION "unsupported manifest version"
#define R_ANCHOR_UPDATE "malformed anchor update"

enum { MT_UINT = 0, MT_NINT = 1, MT_BYTES = 2, MT_TEXT = 3, MT_ARRAY = 4, MT_MAP = 5, MT_TAG = 6 };

typedef struct {
    const uint8_t *p;
    uint32_t len, pos;
} reader;

/* One head. 0 at the end of the input, for a reserved or indefinite length, or a head longer than needed. */
static int read_head(reader *r, int *major, uint64_t *arg)
{
    uint32_t extra, i;
    uint8_t ai;
    uint64_t v = 0;
    if (r->pos >= r->len)
        return 0;
    *major = r->p[r->pos] >> 5;
    ai = r->p[r->pos] & 31u;
    r->pos++;
    if (*major == 7)
        return 0;
    if (ai < 24) {
        *arg = ai;
        return 1;
    }
    if (ai > 27)
        return 0;
    extra = 1u << (ai - 24);
    if (r->len - r->pos < extra)
        return 0;
    for (i = 0; i < extra; i++)
        v = (v << 8) | r->p[r->pos + i];
    r->pos += extra;
    /* shortest form: the value must not have fit the next smaller head */
    if ((ai == 24 && v < 24) || (ai == 25 && v <= 0xffu) || (ai == 26 && v <= 0xffffu) ||
        (ai == 27 && v <= 0xffffffffu))
        return 0;
    *arg = v;
    return 1;
}

static int expect(reader *r, int major, uint64_t arg)
{
    int m;
    uint64_t a;
    return read_head(r, &m, &a) && m == major && a == arg;
}

/* A byte or text string of major type `major`; its bytes are in the input (length checked). */
static int read_string(reader *r, int major, const uint8_t **p, uint32_t *n)
{
    int m;
    uint64_t a;
    if (!read_head(r, &m, &a) || m != major || a > r->len - r->pos)
        return 0;
    *p = r->p + r->pos;
    *n = (uint32_t)a;
    r->pos += (uint32_t)a;
    return 1;
}

static int read_fixed_bytes(reader *r, uint8_t *out, uint32_t size)
{
    const uint8_t *p;
    uint32_t n;
    if (!read_string(r, MT_BYTES, &p, &n) || n != size)
        return 0;
    memcpy(out, p, size);
    return 1;
}

static int read_text(reader *r, tml_text *t)
{
    uint32_t i;
    if (!read_string(r, MT_TEXT, &t->p, &t->len) || t->len == 0 || t->len > TML_MANIFEST_TEXT_MAX)
        return 0;
    for (i = 0; i < t->len; i++)
        if (t->p[i] < 0x20 || t->p[i] > 0x7e)
            return 0;
    return 1;
}

static int read_uint(reader *r, uint64_t *v)
{
    int m;
    return read_head(r, &m, v) && m == MT_UINT;
}

/* SUIT_Digest [-16 (SHA-256), bstr .size 32] */
static int read_digest(reader *r, uint8_t out[32])
{
    return expect(r, MT_ARRAY, 2) && expect(r, MT_NINT, 15) && read_fixed_bytes(r, out, 32);
}

const char *tml_manifest_parse(const uint8_t *payload, uint32_t len, tml_manifest *out)
{
    reader r = {payload, len, 0};
    int m;
    uint64_t count, v;
    memset(out, 0, sizeof *out);
    if (!read_head(&r, &m, &count) || m != MT_MAP || count == 0 || !expect(&r, MT_UINT, 1))
        return R_MANIFEST;
    if (!read_uint(&r, &v))
        return R_MANIFEST;
    if (v != 1)
        return R_VERSION;
    if (count != 10)
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 2) || !read_uint(&r, &out->sequence))
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 3) || !read_fixed_bytes(&r, out->vendor_id, 16))
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 4) || !read_fixed_bytes(&r, out->class_id, 16))
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 5) || !read_text(&r, &out->component))
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 6) || !read_digest(&r, out->blob_sha256))
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 7) || !read_uint(&r, &v) || v > 0xffffffffu)
        return R_MANIFEST;
    out->blob_bytes = (uint32_t)v;
    if (!expect(&r, MT_UINT, 8) || !read_text(&r, &out->name))
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 9) || !read_text(&r, &out->version))
        return R_MANIFEST;
    if (!expect(&r, MT_UINT, 10) || !read_digest(&r, out->vectors_sha256))
        return R_MANIFEST;
    return r.pos == r.len ? NULL : R_MANIFEST;
}

/* The protected header: exactly {1: alg, 4: kid}, alg an integer, kid 8 bytes; then alg must be -7 (ES256). The
 * algorithm is judged last, so that "unsupported algorithm" means a well-formed header (as in the other readers). */
static const char *parse_protected(const uint8_t *p, uint32_t len, const uint8_t **kid)
{
    reader r = {p, len, 0};
    int m;
    uint64_t a;
    uint32_t n;
    if (!expect(&r, MT_MAP, 2) || !expect(&r, MT_UINT, 1) || !read_head(&r, &m, &a) || (m != MT_UINT && m != MT_NINT))
        return R_MALFORMED;
    if (!expect(&r, MT_UINT, 4) || !read_string(&r, MT_BYTES, kid, &n) || n != TML_KID_BYTES || r.pos != r.len)
        return R_MALFORMED;
    return m == MT_NINT && a == 6 ? NULL : R_ALG;
}

/* SHA-256 of a CBOR head (shortest form) */
static void hash_head(tml_sha256 *h, int major, uint32_t arg)
{
    uint8_t b[5];
    uint32_t n = 1;
    if (arg < 24) {
        b[0] = (uint8_t)((major << 5) | (int)arg);
    } else if (arg <= 0xffu) {
        b[0] = (uint8_t)((major << 5) | 24);
        b[1] = (uint8_t)arg;
        n = 2;
    } else if (arg <= 0xffffu) {
        b[0] = (uint8_t)((major << 5) | 25);
        b[1] = (uint8_t)(arg >> 8);
        b[2] = (uint8_t)arg;
        n = 3;
    } else {
        b[0] = (uint8_t)((major << 5) | 26);
        b[1] = (uint8_t)(arg >> 24);
        b[2] = (uint8_t)(arg >> 16);
        b[3] = (uint8_t)(arg >> 8);
        b[4] = (uint8_t)arg;
        n = 5;
    }
    tml_sha256_update(h, b, n);
}

const char *tml_cose_verify_payload(const uint8_t *env, uint32_t len, const tml_anchor *anchors, uint32_t n_anchors,
                                    const uint8_t **payload, uint32_t *payload_len)
{
    reader r = {env, len, 0};
    const uint8_t *prot, *sig, *kid = NULL;
    uint32_t prot_len, sig_len, i;
    const char *why;
    const tml_anchor *anchor = NULL;
    tml_sha256 h;
    uint8_t digest[32];
    /* the whole envelope's structure first, then the protected header inside it */
    if (len > TML_ENVELOPE_MAX_BYTES || !expect(&r, MT_TAG, 18) || !expect(&r, MT_ARRAY, 4) ||
        !read_string(&r, MT_BYTES, &prot, &prot_len) || !expect(&r, MT_MAP, 0) ||
        !read_string(&r, MT_BYTES, payload, payload_len) || !read_string(&r, MT_BYTES, &sig, &sig_len) ||
        sig_len != 64 || r.pos != r.len)
        return R_MALFORMED;
    why = parse_protected(prot, prot_len, &kid);
    if (why)
        return why;
    for (i = 0; i < n_anchors && !anchor; i++)
        if (memcmp(anchors[i].kid, kid, TML_KID_BYTES) == 0)
            anchor = &anchors[i];
    if (!anchor)
        return R_KEY;
    /* Sig_structure = ["Signature1", protected, h'', payload] (RFC 9052 §4.4), hashed as it is encoded */
    tml_sha256_init(&h);
    tml_sha256_update(&h, "\x84\x6aSignature1", 12);
    hash_head(&h, MT_BYTES, prot_len);
    tml_sha256_update(&h, prot, prot_len);
    tml_sha256_update(&h, "\x40", 1);
    hash_head(&h, MT_BYTES, *payload_len);
    tml_sha256_update(&h, *payload, *payload_len);
    tml_sha256_final(&h, digest);
    if (tml_p256_verify(anchor->point, digest, sig) != TML_P256_VALID)
        return R_SIGNATURE;
    return NULL;
}

const char *tml_cose_verify(const uint8_t *env, uint32_t len, const tml_anchor *anchors, uint32_t n_anchors,
                            tml_manifest *out)
{
    const uint8_t *payload = NULL;
    uint32_t payload_len = 0;
    const char *why;
    memset(out, 0, sizeof *out);
    if ((why = tml_cose_verify_payload(env, len, anchors, n_anchors, &payload, &payload_len)))
        return why;
    return tml_manifest_parse(payload, payload_len, out);
}

const char *tml_anchor_update_parse(const uint8_t *payload, uint32_t len, tml_anchor_update *out)
{
    reader r = {payload, len, 0};
    int m;
    uint64_t count;
    memset(out, 0, sizeof *out);
    if (!read_head(&r, &m, &count) || m != MT_MAP || (count != 4 && count != 5) || !expect(&r, MT_UINT, 1) ||
        !expect(&r, MT_UINT, 1) || !expect(&r, MT_UINT, 2) || !read_uint(&r, &out->sequence) ||
        !expect(&r, MT_UINT, 3) || !read_fixed_bytes(&r, out->vendor_id, 16) || !expect(&r, MT_UINT, 4) ||
        !read_fixed_bytes(&r, out->point, 65))
        return R_ANCHOR_UPDATE;
    if (count == 5 && (!expect(&r, MT_UINT, 5) || !read_fixed_bytes(&r, out->revoke, TML_KID_BYTES)))
        return R_ANCHOR_UPDATE;
    out->has_revoke = count == 5;
    if (r.pos != r.len || out->sequence == 0 || !tml_p256_public_key_valid(out->point))
        return R_ANCHOR_UPDATE; /* a point off the curve is no anchor */
    return NULL;
}

const char *tml_manifest_admit(const tml_manifest *m, const uint8_t vendor_id[16], const uint8_t class_id[16],
                               const tml_installed *installed)
{
    if (memcmp(m->vendor_id, vendor_id, 16) != 0)
        return "wrong vendor";
    if (memcmp(m->class_id, class_id, 16) != 0)
        return "wrong device class";
    if (installed && (m->sequence < installed->sequence ||
                      (m->sequence == installed->sequence && memcmp(m->blob_sha256, installed->blob_sha256, 32) != 0)))
        return "rollback";
    return NULL;
}
