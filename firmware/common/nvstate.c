/* Two alternating state records (nvstate.h). A unit holds one record at its start:
 *   u32 magic "TMNV" | u32 counter | nv_state | u32 CRC-32 of everything before it
 * The newest intact record (valid magic and CRC, larger counter) is the state. An update writes counter + 1 into
 * the other unit: erase, then one program of the whole record. A cut during either leaves that unit failing its
 * CRC (an erased CRC word, or a half-programmed one) and the newest record untouched. */
#include <stddef.h>
#include <string.h>

#include "nvm.h"
#include "nvstate.h"

#define RECORD_MAGIC 0x564E4D54u /* "TMNV" */

struct record {
    uint32_t magic, counter;
    nv_state state;
    uint32_t crc;
};
typedef char record_fits[sizeof(struct record) <= NVM_UNIT_BYTES && sizeof(struct record) % 4 == 0 ? 1 : -1];

static const struct nv_area *area;
static int loaded, newest = -1; /* unit of the newest intact record */
static uint32_t newest_counter;
static nv_state current;

static int intact(int u, struct record *out)
{
    memcpy(out, area->unit[u], sizeof *out);
    return out->magic == RECORD_MAGIC &&
           out->crc == fw_crc32(0, (const uint8_t *)out, (uint32_t)offsetof(struct record, crc));
}

static void load(void)
{
    struct record r[2];
    int v0, v1;
    if (loaded)
        return;
    loaded = 1;
    if (!(area = board_nv()) || area->bytes < sizeof(struct record))
        return;
    v0 = intact(0, &r[0]);
    v1 = intact(1, &r[1]);
    if (v0 && v1)
        newest = (int32_t)(r[1].counter - r[0].counter) > 0; /* counters wrap */
    else
        newest = v0 ? 0 : v1 ? 1 : -1;
    if (newest >= 0) {
        current = r[newest].state;
        newest_counter = r[newest].counter;
    }
}

void nvstate_boot(void)
{
    loaded = 0;
    area = 0;
    newest = -1;
    newest_counter = 0;
    memset(&current, 0, sizeof current);
    load();
}

int nvstate_available(void)
{
    load();
    return area != 0 && area->bytes >= sizeof(struct record);
}

const nv_state *nvstate(void)
{
    load();
    return &current;
}

nv_state *nvstate_edit(void)
{
    static nv_state draft;
    draft = *nvstate();
    return &draft;
}

const char *nvstate_put(const nv_state *next)
{
    struct record r;
    int u;
    const char *err;
    if (!nvstate_available())
        return "no non-volatile memory for the firmware's state";
    u = newest == 0; /* the unit not holding the newest record */
    memset(&r, 0, sizeof r); /* padding too: the CRC covers it */
    r.magic = RECORD_MAGIC;
    r.counter = newest >= 0 ? newest_counter + 1u : 1u;
    r.state = *next;
    r.crc = fw_crc32(0, (const uint8_t *)&r, (uint32_t)offsetof(struct record, crc));
    if ((err = area->erase(u)) || (err = area->program(u, 0, (const uint8_t *)&r, sizeof r)))
        return err;
    newest = u;
    newest_counter = r.counter;
    current = *next;
    return 0;
}
