/* Flash model store: two slots (A/B), each a record followed by the blob, which runs in place from flash.
 *
 * Record (first words of a slot; the blob starts at RECORD_BYTES so its constants keep their alignment):
 *   word 0 magic "TMLS" | 1 seq | 2 ~seq | 3 blob length | 4 commit | 5 revoke
 * An install erases the slot the active model is not in, programs magic/seq/length and the blob, validates the
 * blob in place, and only then programs the commit word: one word, written last. A slot counts only when its
 * commit word reads COMMITTED and its revoke word is still erased; the newest such slot (largest seq) is the
 * active model. So a power cut before the commit word leaves the previous model active, one after it the new one,
 * and the previous model stays in the other slot as the fallback a boot uses when the newest fails validation.
 * Flash bits only go 1 -> 0 without an erase: commit and revoke are single programs of an erased word. */
#include <string.h>

#include "flash.h"
#include "slot.h"

#define RECORD_MAGIC 0x534C4D54u /* "TMLS" */
#define RECORD_COMMITTED 0x7E57AB1Eu
#define RECORD_REVOKED 0u
#define ERASED 0xFFFFFFFFu
#define RECORD_BYTES 256u
enum { W_MAGIC, W_SEQ, W_SEQ_INV, W_LEN, W_COMMIT, W_REVOKE };

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
    i = active == 0 ? 1 : 0;
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

static const char *flash_activate(void)
{
    const char *err;
    if (staged < 0 || written != staged_len)
        return "nothing staged";
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
                                  flash_clear};

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
