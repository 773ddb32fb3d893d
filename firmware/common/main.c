/* tinymlaas bare-metal firmware: boots, announces its capabilities, receives model blobs over the UART protocol
 * (protocol.h), installs only those its owner signed (the COSE_Sign1 manifest COMMIT carries, checked against the
 * trust table, trust.h), validates them with the C runtime, keeps them in a model slot (slot.h: flash where the
 * board's flash can be programmed, else RAM) and runs inferences. */
#include <string.h>

#include "board.h"
#include "link.h"
#include "nvm.h"
#include "nvstate.h"
#include "protocol.h"
#include "slot.h"
#include "systick.h"
#include "tml.h"
#include "tml_cose.h"
#include "trust.h"

#define FW_VERSION "0.1.0"

#ifndef RAM_STORE_ARENA_BYTES
#error "RAM_STORE_ARENA_BYTES must be set by the board's Makefile settings"
#endif

/* All RAM between .bss and the stack (common.ld). With the flash store it is all arena; with the RAM store the
 * top RAM_STORE_ARENA_BYTES are the arena and the rest holds the blobs. */
extern uint8_t __pool_start[], __pool_end[];
extern uint32_t __stack_limit[]; /* lowest address of the stack region */
extern uint32_t __stack_top[];   /* one past its highest */
const struct slot_store *slot_flash_init(void) __attribute__((weak)); /* linked on boards with flash slots */

static const struct slot_store *store;
static uint8_t *arena;
static uint32_t arena_bytes;

/* The active model runs from its slot; a new blob is staged beside it (slot.h) and replaces it only after it
 * validated, so a failed install leaves the previous model running. */
static tml_model active;
static int have_model;
static uint32_t active_len;
static uint32_t boot_refused; /* stored models a boot found invalid and revoked */
#define PROFILE_OPS 256
static uint32_t op_cycles[PROFILE_OPS];
static uint64_t op_start;
static uint32_t invoke_stack; /* deepest stack of the last INVOKE, from the stack's top (painted), for PROFILE */
static void profile_op(void *ctx, uint32_t k, int end);

static struct {
    int open;
    uint32_t total, received;
    tml_sha256 hash; /* of the blob as it arrives: COMMIT compares it with the manifest's digest */
} stage;

/* ---- requests ---- */

/* What the host needs to sign for this device: vendor and class ids, the key ids it trusts, the sequence number an
 * install must exceed (none: no signed model was installed yet). */
/* "anchors=<kid hex>,... anchor_sequence=N": the keys trusted now and the last anchor update taken */
static char *put_anchors(char *o, const char *end)
{
    uint32_t k, n;
    const tml_anchor *anchors = trust_now(&n);
    o = put_s(o, end, "anchors=");
    for (k = 0; k < n; k++) {
        if (k)
            o = put_s(o, end, ",");
        o = put_hex(o, end, anchors[k].kid, TML_KID_BYTES);
    }
    o = put_s(o, end, " anchor_sequence=");
    return put_u64(o, end, trust_anchor_sequence());
}

static char *put_caps_trust(char *o, const char *end)
{
    tml_installed st;
    o = put_s(o, end, " vendor=");
    o = put_hex(o, end, trust_vendor_id, 16);
    o = put_s(o, end, " class=");
    o = put_hex(o, end, trust_class_id, 16);
    o = put_s(o, end, " ");
    o = put_anchors(o, end);
    o = put_s(o, end, " sequence=");
    if (store->installed(&st))
        o = put_u64(o, end, st.sequence);
    else
        o = put_s(o, end, "none");
    return o;
}

static uint32_t caps_text(char *o0, uint32_t cap)
{
    char *o = o0, *end = o0 + cap;
    o = put_s(o, end, "tinymlaas-fw version=" FW_VERSION " board=");
    o = put_s(o, end, BOARD_NAME);
    o = put_s(o, end, " cpu=cortex-m4 proto=1 format=1 abi=1 ops=1-22 kernels=");
    o = put_s(o, end, tml_kernel_set());
    o = put_s(o, end, " ram=");
    o = put_u(o, end, BOARD_RAM_BYTES);
    o = put_s(o, end, " storage=");
    o = put_s(o, end, store->kind);
    o = put_s(o, end, " slot=");
    o = put_u(o, end, store->capacity);
    o = put_s(o, end, " arena=");
    o = put_u(o, end, arena_bytes);
    o = put_s(o, end, " chunk=");
    o = put_u(o, end, PROTO_CHUNK);
    o = put_s(o, end, " core_hz=");
    o = put_u(o, end, BOARD_CORE_HZ);
    o = put_s(o, end, " model=");
    if (have_model) {
        o = put_hex(o, end, active.blob + 24, 8);
        o = put_s(o, end, " model_bytes=");
        o = put_u(o, end, active_len);
    } else {
        o = put_s(o, end, "none");
    }
    if (boot_refused) {
        o = put_s(o, end, " boot_refused=");
        o = put_u(o, end, boot_refused);
    }
    o = put_caps_trust(o, end);
    if (board_nv()) {
        o = put_s(o, end, " nvm_writes=");
        o = put_u(o, end, nvm_writes());
    }
    return (uint32_t)(o - o0);
}

static void do_begin(uint8_t seq, const uint8_t *p, uint32_t len)
{
    uint32_t total, arena_need;
    char reason[120];
    const char *err;
    stage.open = 0;
    if (len != TML_HEADER_BYTES) {
        nak(seq, NAK_LENGTH, REQ_BEGIN, "BEGIN carries the 64-byte blob header");
        return;
    }
    if (tml_check_header(p, len, &total, &arena_need, reason, sizeof reason) != TML_OK) {
        nak(seq, NAK_REJECTED, REQ_BEGIN, reason);
        return;
    }
    if (arena_need > arena_bytes) {
        nak(seq, NAK_NO_ROOM, REQ_BEGIN, "model needs a larger arena than this device has");
        return;
    }
    if (total > store->capacity) {
        nak(seq, NAK_NO_ROOM, REQ_BEGIN, "blob is larger than the model slot");
        return;
    }
    if ((err = store->begin(total)) || (err = store->write(0, p, len))) {
        nak(seq, NAK_STORAGE, REQ_BEGIN, err);
        return;
    }
    stage.open = 1;
    stage.total = total;
    stage.received = len;
    tml_sha256_init(&stage.hash);
    tml_sha256_update(&stage.hash, p, len);
    {
        uint8_t r[4];
        wr32(r, PROTO_CHUNK);
        send_frame(REQ_BEGIN | REPLY_OK, seq, r, 4);
    }
}

static void do_chunk(uint8_t seq, const uint8_t *p, uint32_t len)
{
    uint32_t off, n;
    uint8_t r[4];
    if (!stage.open) {
        nak(seq, NAK_STATE, REQ_CHUNK, "CHUNK without BEGIN");
        return;
    }
    if (len < 4) {
        nak(seq, NAK_LENGTH, REQ_CHUNK, "CHUNK needs a u32 offset");
        return;
    }
    off = rd32(p);
    n = len - 4;
    if (off != stage.received) {
        char msg[48], *o = msg, *end = msg + sizeof msg - 1;
        o = put_s(o, end, "expected offset ");
        o = put_u(o, end, stage.received);
        *o = 0;
        nak(seq, NAK_OFFSET, REQ_CHUNK, msg);
        return;
    }
    if (n > stage.total - stage.received) {
        nak(seq, NAK_LENGTH, REQ_CHUNK, "chunk runs past total_bytes");
        return;
    }
    {
        const char *err = store->write(off, p + 4, n);
        if (err) {
            stage.open = 0;
            nak(seq, NAK_STORAGE, REQ_CHUNK, err);
            return;
        }
    }
    tml_sha256_update(&stage.hash, p + 4, n);
    stage.received += n;
    wr32(r, stage.received);
    send_frame(REQ_CHUNK | REPLY_OK, seq, r, 4);
}

/* A validated model becomes the one INPUT/INVOKE/OUTPUT use. */
static void activate(const tml_model *m, uint32_t len)
{
    active = *m;
    active.on_op = profile_op;
    memset(op_cycles, 0, sizeof op_cycles);
    active_len = len;
    have_model = 1;
}

#define STACK_PAINT 0xa5a5a5a5u
static inline uint32_t stack_pointer(void)
{
    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Stack bytes a call uses: paint the free stack below the caller's frame before it, find the deepest word it
 * overwrote after it. COMMIT reports this for its signature check (docs/firmware.md, "Signed installs"), INVOKE
 * keeps it for PROFILE. */
static void paint_stack(void)
{
    uint32_t *w, sp = stack_pointer();
    for (w = __stack_limit; (uintptr_t)w < sp - 64u; w++)
        *w = STACK_PAINT;
}

static uint32_t stack_depth_since_paint(void)
{
    uint32_t *w, sp = stack_pointer();
    for (w = __stack_limit; *w == STACK_PAINT && (uintptr_t)w < sp; w++) {
    }
    return sp - (uint32_t)(uintptr_t)w;
}

/* The signed manifest COMMIT carries must be one of ours, for this blob, and newer than what the slot installed:
 * NULL, with *now the state to keep once the blob is active, or the refusal reason. */
static const char *check_manifest(const uint8_t *env, uint32_t len, tml_installed *now)
{
    static const char component[] = "model"; /* this firmware's one component */
    tml_manifest m;
    tml_installed have;
    uint8_t digest[32];
    const char *why;
    uint32_t n_anchors;
    const tml_anchor *anchors = trust_now(&n_anchors);
    if (!len)
        return "unsigned install: COMMIT must carry the model's signed manifest (COSE_Sign1)";
    if ((why = tml_cose_verify(env, len, anchors, n_anchors, &m)))
        return why;
    if (m.component.len != sizeof component - 1 || memcmp(m.component.p, component, sizeof component - 1))
        return "wrong component";
    if (m.blob_bytes != stage.total)
        return "blob size does not match the manifest";
    tml_sha256_final(&stage.hash, digest);
    if (memcmp(digest, m.blob_sha256, 32))
        return "blob digest does not match the manifest";
    if ((why = tml_manifest_admit(&m, trust_vendor_id, trust_class_id, store->installed(&have) ? &have : NULL)))
        return why;
    now->sequence = m.sequence;
    memcpy(now->blob_sha256, m.blob_sha256, 32);
    return NULL;
}

static void do_commit(uint8_t seq, const uint8_t *env, uint32_t env_len)
{
    tml_model m;
    tml_installed now;
    const uint8_t *blob;
    const char *err;
    uint64_t t0, t1;
    uint32_t stack;
    char msg[160], *o = msg, *end = msg + sizeof msg;
    if (!stage.open || stage.received != stage.total) {
        nak(seq, NAK_STATE, REQ_COMMIT, stage.open ? "blob incomplete" : "COMMIT without BEGIN");
        return;
    }
    stage.open = 0;
    paint_stack();
    t0 = systick_cycles();
    err = check_manifest(env, env_len, &now);
    t1 = systick_cycles();
    stack = stack_depth_since_paint();
    if (err) {
        nak(seq, NAK_REJECTED, REQ_COMMIT, err);
        return; /* nothing was activated: the previous model still runs */
    }
    if ((err = store->staged(&blob))) {
        nak(seq, NAK_STORAGE, REQ_COMMIT, err);
        return;
    }
    if (tml_load(&m, blob, stage.total, arena, arena_bytes) != TML_OK) {
        nak(seq, NAK_REJECTED, REQ_COMMIT, tml_reason(&m));
        return; /* the staged bytes are simply forgotten: the active model was never touched */
    }
    if ((err = store->activate(&now))) {
        nak(seq, NAK_STORAGE, REQ_COMMIT, err);
        return;
    }
    activate(&m, stage.total);
    o = put_s(o, end, "installed ops=");
    o = put_u(o, end, m.n_ops);
    o = put_s(o, end, " arena=");
    o = put_u(o, end, m.arena_bytes);
    o = put_s(o, end, " storage=");
    o = put_s(o, end, store->kind);
    o = put_s(o, end, " sequence=");
    o = put_u64(o, end, now.sequence);
    o = put_s(o, end, " verify_cycles=");
    o = put_u(o, end, (uint32_t)(t1 - t0));
    o = put_s(o, end, " verify_stack=");
    o = put_u(o, end, stack);
    send_frame(REQ_COMMIT | REPLY_OK, seq, (const uint8_t *)msg, (uint32_t)(o - msg));
}

/* An anchor update: the trust table follows a key rotation (trust.h). */
static void do_anchors(uint8_t seq, const uint8_t *env, uint32_t len)
{
    int storage;
    uint64_t t0 = systick_cycles();
    const char *why = trust_update(env, len, &storage);
    uint64_t t1 = systick_cycles();
    char msg[220], *o = msg, *end = msg + sizeof msg;
    if (why) {
        nak(seq, storage ? NAK_STORAGE : NAK_REJECTED, REQ_ANCHORS, why);
        return;
    }
    o = put_anchors(o, end);
    o = put_s(o, end, " cycles=");
    o = put_u(o, end, (uint32_t)(t1 - t0));
    send_frame(REQ_ANCHORS | REPLY_OK, seq, (const uint8_t *)msg, (uint32_t)(o - msg));
}

/* Visit the graph inputs (or outputs) as one concatenated byte range [off, off + n). */
static int io_span(int outputs, uint32_t off, uint32_t n, uint8_t *buf, int write)
{
    uint32_t k, base = 0, count = outputs ? active.n_outputs : active.n_inputs;
    uint64_t end = (uint64_t)off + n, total = 0;
    for (k = 0; k < count; k++) {
        tml_tensor t;
        tml_tensor_get(&active, (uint32_t)(outputs ? tml_output_index(&active, k) : tml_input_index(&active, k)),
                       &t);
        total += t.bytes;
    }
    if (end > total)
        return -1;
    for (k = 0; k < count && n; k++) {
        tml_tensor t;
        int idx = outputs ? tml_output_index(&active, k) : tml_input_index(&active, k);
        tml_tensor_get(&active, (uint32_t)idx, &t);
        if (off < base + t.bytes) {
            uint32_t s = off - base, c = t.bytes - s < n ? t.bytes - s : n;
            uint8_t *d = (uint8_t *)tml_tensor_data(&active, (uint32_t)idx) + s;
            if (write)
                memcpy(d, buf, c);
            else
                memcpy(buf, d, c);
            buf += c;
            off += c;
            n -= c;
        }
        base += t.bytes;
    }
    return 0;
}

static uint32_t io_total(int outputs)
{
    uint32_t k, total = 0, count = outputs ? active.n_outputs : active.n_inputs;
    for (k = 0; k < count; k++) {
        tml_tensor t;
        tml_tensor_get(&active, (uint32_t)(outputs ? tml_output_index(&active, k) : tml_input_index(&active, k)),
                       &t);
        total += t.bytes;
    }
    return total;
}

static void do_input(uint8_t seq, const uint8_t *p, uint32_t len)
{
    if (!have_model) {
        nak(seq, NAK_NO_MODEL, REQ_INPUT, "no model installed");
        return;
    }
    if (len < 4 || io_span(0, rd32(p), len - 4, (uint8_t *)p + 4, 1)) {
        nak(seq, NAK_OFFSET, REQ_INPUT, "input bytes outside the model's inputs");
        return;
    }
    send_frame(REQ_INPUT | REPLY_OK, seq, NULL, 0);
}

static void profile_op(void *ctx, uint32_t k, int end)
{
    uint64_t now = systick_cycles();
    (void)ctx;
    if (!end)
        op_start = now;
    else if (k < PROFILE_OPS)
        op_cycles[k] = (uint32_t)(now - op_start);
}

static void do_profile(uint8_t seq)
{
    uint32_t k, n = have_model ? (active.n_ops < PROFILE_OPS ? active.n_ops : PROFILE_OPS) : 0;
    wr32(frame_tx + 6, invoke_stack);
    for (k = 0; k < n; k++)
        wr32(frame_tx + 10 + 4 * k, op_cycles[k]);
    send_frame(REQ_PROFILE | REPLY_OK, seq, frame_tx + 6, 4 + 4 * n);
}

static void do_invoke(uint8_t seq)
{
    uint64_t t0, t1;
    uint32_t st, out_total, first;
    uint8_t *r = frame_tx + 6;
    if (!have_model) {
        nak(seq, NAK_NO_MODEL, REQ_INVOKE, "no model installed");
        return;
    }
    paint_stack(); /* outside the timed span: the cycles are tml_invoke's alone */
    t0 = systick_cycles();
    st = (uint32_t)tml_invoke(&active);
    t1 = systick_cycles();
    invoke_stack = stack_depth_since_paint() + (uint32_t)((uintptr_t)__stack_top - stack_pointer());
    out_total = io_total(1);
    first = out_total < PROTO_MAX_PAYLOAD - 16u ? out_total : PROTO_CHUNK;
    wr32(r, st);
    wr32(r + 4, (uint32_t)(t1 - t0));
    wr32(r + 8, (uint32_t)((t1 - t0) >> 32));
    wr32(r + 12, out_total);
    io_span(1, 0, first, r + 16, 0);
    send_frame(REQ_INVOKE | REPLY_OK, seq, r, 16 + first);
}

static void do_output(uint8_t seq, const uint8_t *p, uint32_t len)
{
    uint32_t off, n;
    if (!have_model) {
        nak(seq, NAK_NO_MODEL, REQ_OUTPUT, "no model installed");
        return;
    }
    if (len != 6) {
        nak(seq, NAK_LENGTH, REQ_OUTPUT, "OUTPUT takes u32 offset, u16 length");
        return;
    }
    off = rd32(p);
    n = p[4] | ((uint32_t)p[5] << 8);
    if (n > PROTO_CHUNK || io_span(1, off, n, frame_tx + 6, 0)) {
        nak(seq, NAK_OFFSET, REQ_OUTPUT, "range outside the model's outputs");
        return;
    }
    send_frame(REQ_OUTPUT | REPLY_OK, seq, frame_tx + 6, n);
}

static void do_calibrate(uint8_t seq, const uint8_t *p, uint32_t len)
{
    uint32_t n;
    uint64_t t0, t1;
    uint8_t r[8];
    if (len != 4 || rd32(p) == 0) {
        nak(seq, NAK_LENGTH, REQ_CALIBRATE, "CALIBRATE takes a nonzero u32 count");
        return;
    }
    n = rd32(p);
    t0 = systick_cycles();
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc"); /* exactly 2 instructions per turn */
    t1 = systick_cycles();
    wr32(r, (uint32_t)(t1 - t0));
    wr32(r + 4, (uint32_t)((t1 - t0) >> 32));
    send_frame(REQ_CALIBRATE | REPLY_OK, seq, r, 8);
}

/* At boot: a stored model becomes active if the runtime accepts it (whole validation, hash included). */
static int accept_stored(const uint8_t *blob, uint32_t len)
{
    tml_model m;
    if (tml_load(&m, blob, len, arena, arena_bytes) != TML_OK) {
        boot_refused++;
        return 0;
    }
    activate(&m, len);
    return 1;
}

static void choose_store(void)
{
    uint32_t pool = (uint32_t)(__pool_end - __pool_start);
    store = slot_flash_init ? slot_flash_init() : 0;
    if (store) {
        arena = __pool_start;
        arena_bytes = pool;
    } else {
        arena_bytes = RAM_STORE_ARENA_BYTES;
        arena = __pool_start + (pool - arena_bytes);
        store = slot_ram_init(__pool_start, pool - arena_bytes);
    }
}

int main(void)
{
    uint32_t len;
    board_init();
    systick_start();
    choose_store();
    nvstate_boot(); /* after the store: on the STM32 board_nv() depends on the flash probe */
    store->boot(accept_stored, &len);
    send_frame(REPLY_BOOT, 0, (const uint8_t *)frame_tx + 6, caps_text((char *)frame_tx + 6, PROTO_MAX_PAYLOAD));
    for (;;) {
        uint32_t len = receive_frame();
        uint8_t type = frame_rx[2], seq = frame_rx[3];
        const uint8_t *p = frame_rx + 6;
        switch (type) {
        case REQ_CAPS:
            send_frame(REQ_CAPS | REPLY_OK, seq, frame_tx + 6, caps_text((char *)frame_tx + 6, PROTO_MAX_PAYLOAD));
            break;
        case REQ_BEGIN: do_begin(seq, p, len); break;
        case REQ_CHUNK: do_chunk(seq, p, len); break;
        case REQ_COMMIT: do_commit(seq, p, len); break;
        case REQ_ERASE: {
            const char *err = store->clear();
            stage.open = 0;
            if (err) {
                nak(seq, NAK_STORAGE, REQ_ERASE, err);
                break;
            }
            have_model = 0;
            send_frame(REQ_ERASE | REPLY_OK, seq, NULL, 0);
            break;
        }
        case REQ_INPUT: do_input(seq, p, len); break;
        case REQ_INVOKE: do_invoke(seq); break;
        case REQ_OUTPUT: do_output(seq, p, len); break;
        case REQ_CALIBRATE: do_calibrate(seq, p, len); break;
        case REQ_PROFILE: do_profile(seq); break;
        case REQ_ANCHORS: do_anchors(seq, p, len); break;
        default: nak(seq, NAK_UNKNOWN, type, "unknown request type");
        }
    }
}
