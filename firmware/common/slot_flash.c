/* Flash model store: two slots (A/B), each a record followed by the blob, which runs in place from flash.
 *
 * Record (first words of a slot; the blob starts at RECORD_BYTES so its constants keep their alignment):
 *   word 0 magic "TMLS" | 1 seq | 2 ~seq | 3 blob length | 4 commit | 5 revoke
 *   words 6-9 manifest sequence (lo, hi, ~lo, ~hi) | 10-17 manifest blob SHA-256 | 18-61 floor log: up to 11
 *   sequence numbers (4 words each, like 6-9) carried over from the other slot before it was erased
 * An install erases the slot the active model is not in, programs magic/seq/length and the blob, validates the
 * blob in place, and only then programs the commit word: one word, written last. A slot counts only when its
 * commit word reads COMMITTED and its revoke word is still erased; the newest such slot (largest seq) is the
 * active model. So a power cut before the commit word leaves the previous model active, one after it the new one,
 * and the previous model stays in the other slot as the fallback a boot uses when the newest fails validation.
 * Flash bits only go 1 -> 0 without an erase: commit and revoke are single programs of an erased word.
 *
 * Anti-rollback: the manifest sequence of an install is programmed with the commit word (before it), and counts
 * once committed, revoked or not. The slot's floor is the highest sequence its record vouches for; the store's is
 * the higher of the two slots'. Only BEGIN's erase could lower it, so before erasing a slot whose floor is above
 * the other's, BEGIN appends that number to the other slot's floor log: at every instant some record holds it. */
#include <string.h>

#include "flash.h"
#include "slot.h"

#define RECORD_MAGIC 0x534C4D54u /* "TMLS" */
#define RECORD_COMMITTED 0x7E57AB1Eu
#define RECORD_REVOKED 0u
#define ERASED 0xFFFFFFFFu
#define RECORD_BYTES 256u
enum { W_MAGIC, W_SEQ, W_SEQ_INV, W_LEN, W_COMMIT, W_REVOKE, W_MSEQ, W_DIGEST = 10, W_FLOOR = 18 };
#define SEQ_WORDS 4u /* lo, hi, ~lo, ~hi */
#define FLOOR_ENTRIES 11u

static const struct flash_slots *fs;
static int active = -1, staged = -1;
static uint32_t staged_len, written, tail_n;
static uint8_t tail[4];

static const uint32_t *record(int i) { return (const uint32_t *)fs->slot[i]; }
static uint8_t *blob_of(int i) { return fs->slot[i] + RECORD_BYTES; }

/* magic and sequence intact (the slot was written by an install, committed or not) */
static int has_record(int i)
{
    const uint32_t *r = record(i);
    return r[W_MAGIC] == RECORD_MAGIC && r[W_SEQ] == ~r[W_SEQ_INV];
}

static int is_live(int i)
{
    const uint32_t *r = record(i);
    return has_record(i) && r[W_COMMIT] == RECORD_COMMITTED && r[W_REVOKE] == ERASED &&
           r[W_LEN] <= fs->bytes - RECORD_BYTES;
}

static const char *program_word(int i, int w, uint32_t v)
{
    uint8_t b[4];
    memcpy(b, &v, 4);
    return flash_program(fs->slot[i] + 4u * (uint32_t)w, b, 4);
}

/* A 64-bit sequence number stored as lo, hi, ~lo, ~hi: 1 when intact (erased or half-programmed words are not). */
static int read_seq(const uint32_t *w, uint64_t *out)
{
    if (w[0] != ~w[2] || w[1] != ~w[3])
        return 0;
    *out = w[0] | (uint64_t)w[1] << 32;
    return 1;
}

/* The highest sequence slot i vouches for (its committed manifest's, or one in its floor log) -> 1, or 0: none.
 * The digest is the committed manifest's when that is the highest, else zero (matches no blob). */
static int slot_floor(int i, tml_installed *st)
{
    const uint32_t *r = record(i);
    uint64_t s;
    uint32_t k;
    int have = 0;
    if (!has_record(i))
        return 0;
    if (r[W_COMMIT] == RECORD_COMMITTED && read_seq(r + W_MSEQ, &s)) {
        st->sequence = s;
        memcpy(st->blob_sha256, r + W_DIGEST, 32);
        have = 1;
    }
    for (k = 0; k < FLOOR_ENTRIES; k++)
        if (read_seq(r + W_FLOOR + SEQ_WORDS * k, &s) && (!have || s > st->sequence)) {
            st->sequence = s;
            memset(st->blob_sha256, 0, 32);
            have = 1;
        }
    return have;
}

static int flash_installed(tml_installed *out)
{
    tml_installed b;
    int have = slot_floor(0, out);
    if (slot_floor(1, &b) && (!have || b.sequence > out->sequence)) {
        *out = b;
        have = 1;
    }
    return have;
}

/* Append `seq` to slot i's floor log (an entry whose four words are all erased; a half-programmed one stays
 * unreadable and is skipped). */
static const char *log_floor(int i, uint64_t seq)
{
    const uint32_t *r = record(i);
    uint32_t k, e[SEQ_WORDS];
    e[0] = (uint32_t)seq;
    e[1] = (uint32_t)(seq >> 32);
    e[2] = ~e[0];
    e[3] = ~e[1];
    for (k = 0; k < FLOOR_ENTRIES; k++) {
        const uint32_t *w = r + W_FLOOR + SEQ_WORDS * k;
        if (w[0] == ERASED && w[1] == ERASED && w[2] == ERASED && w[3] == ERASED)
            return flash_program(fs->slot[i] + 4u * (W_FLOOR + SEQ_WORDS * k), (const uint8_t *)e, sizeof e);
    }
    return "the anti-rollback log of the active slot is full";
}

static const uint8_t *flash_boot(int (*accept)(const uint8_t *blob, uint32_t len), uint32_t *len)
{
    int order[2] = {0, 1}, k;
    if (is_live(1) && (!is_live(0) || record(1)[W_SEQ] > record(0)[W_SEQ])) {
        order[0] = 1;
        order[1] = 0;
    }
    active = -1;
    for (k = 0; k < 2; k++) {
        int i = order[k];
        if (!is_live(i))
            continue;
        if (accept(blob_of(i), record(i)[W_LEN])) {
            active = i;
            *len = record(i)[W_LEN];
            return blob_of(i);
        }
        program_word(i, W_REVOKE, RECORD_REVOKED); /* best effort: it would be refused again anyway */
    }
    *len = 0;
    return NULL;
}

static const char *flash_begin(uint32_t total)
{
    uint32_t seq = 0, words[4];
    const char *err;
    int i;
    staged = -1;
    if (total > fs->bytes - RECORD_BYTES)
        return "blob is larger than the model slot";
    for (i = 0; i < 2; i++)
        if (has_record(i) && record(i)[W_SEQ] >= seq)
            seq = record(i)[W_SEQ] + 1u;
    {
        /* stage in the slot the active model is not in; with none active, in the one vouching for less */
        tml_installed f[2];
        int h[2];
        h[0] = slot_floor(0, &f[0]);
        h[1] = slot_floor(1, &f[1]);
        i = active >= 0 ? 1 - active : (h[0] && (!h[1] || f[0].sequence > f[1].sequence));
        if (h[i] && (!h[1 - i] || f[i].sequence > f[1 - i].sequence)) {
            /* slot i holds the floor (a newer model revoked at boot): carry it into the active slot first */
            if (!has_record(1 - i))
                return "no record to carry the anti-rollback state";
            if ((err = log_floor(1 - i, f[i].sequence)))
                return err;
        }
    }
    if ((err = flash_erase(fs->slot[i], fs->bytes)))
        return err;
    words[W_MAGIC] = RECORD_MAGIC;
    words[W_SEQ] = seq;
    words[W_SEQ_INV] = ~seq;
    words[W_LEN] = total;
    if ((err = flash_program(fs->slot[i], (const uint8_t *)words, sizeof words)))
        return err;
    staged = i;
    staged_len = total;
    written = tail_n = 0;
    return 0;
}

static const char *flash_write(uint32_t off, const uint8_t *p, uint32_t n)
{
    const char *err;
    if (staged < 0 || off != written + tail_n || n > staged_len - off)
        return "write outside the staged blob";
    while (n) {
        if (tail_n || n < 4) { /* gather a word from chunk ends that are not word multiples */
            tail[tail_n++] = *p++;
            n--;
            if (tail_n == 4) {
                if ((err = flash_program(blob_of(staged) + written, tail, 4)))
                    return err;
                written += 4;
                tail_n = 0;
            }
        } else {
            uint32_t k = n & ~3u;
            if ((err = flash_program(blob_of(staged) + written, p, k)))
                return err;
            written += k;
            p += k;
            n -= k;
        }
    }
    return 0;
}

static const char *flash_staged(const uint8_t **blob)
{
    const char *err;
    *blob = NULL;
    if (staged < 0 || written + tail_n != staged_len)
        return "nothing staged";
    if (tail_n) { /* the last partial word, padded with the erased value */
        memset(tail + tail_n, 0xFF, 4u - tail_n);
        if ((err = flash_program(blob_of(staged) + written, tail, 4)))
            return err;
        written += tail_n;
        tail_n = 0;
    }
    *blob = blob_of(staged);
    return 0;
}

static const char *flash_activate(const tml_installed *state)
{
    const char *err;
    uint32_t w[SEQ_WORDS + 8];
    if (staged < 0 || written != staged_len)
        return "nothing staged";
    if (state) { /* the manifest first: it counts only once the commit word is there */
        w[0] = (uint32_t)state->sequence;
        w[1] = (uint32_t)(state->sequence >> 32);
        w[2] = ~w[0];
        w[3] = ~w[1];
        memcpy(w + SEQ_WORDS, state->blob_sha256, 32);
        if ((err = flash_program(fs->slot[staged] + 4u * W_MSEQ, (const uint8_t *)w, sizeof w)))
            return err;
    }
    if ((err = program_word(staged, W_COMMIT, RECORD_COMMITTED)))
        return err;
    active = staged;
    staged = -1;
    return 0;
}

static const char *flash_clear(void)
{
    const char *err;
    int i;
    staged = -1;
    /* the active slot last: a cut in between must not bring back the older model */
    for (i = 0; i < 2; i++)
        if (i != active && is_live(i) && (err = program_word(i, W_REVOKE, RECORD_REVOKED)))
            return err;
    if (active >= 0 && (err = program_word(active, W_REVOKE, RECORD_REVOKED)))
        return err;
    active = -1;
    return 0;
}

static struct slot_store store = {"flash", 0, flash_boot, flash_begin, flash_write, flash_staged, flash_activate,
                                  flash_clear, flash_installed};

const struct slot_store *slot_flash_init(void)
{
    fs = board_flash();
    active = staged = -1;
    staged_len = written = tail_n = 0;
    if (!fs)
        return NULL;
    store.capacity = fs->bytes - RECORD_BYTES;
    return &store;
}
