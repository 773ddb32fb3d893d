/* The firmware's state in non-volatile memory (nvm.h: board_nv()), kept power-safe as two alternating records:
 * each holds a counter and a CRC-32, and an update erases and writes the unit that does not hold the newest
 * record, so a power cut at any moment leaves that newest one (the old state) or the new one, never neither. */
#ifndef NVSTATE_H
#define NVSTATE_H

#include <stdint.h>

#include "tml_cose.h"

#define NV_MAX_ANCHORS 8 /* as the MicroPython device (tinyml/anchors.py) */

typedef struct {
    uint64_t anchor_sequence;              /* the last anchor update taken; 0: none */
    uint32_t n_anchors;                    /* 0: the build's trust table (trust.c) */
    tml_anchor anchors[NV_MAX_ANCHORS];
    uint32_t have_installed;               /* the RAM store's anti-rollback state (the flash store keeps its own) */
    tml_installed installed;
} nv_state;

/* Read the records (again): at boot, once the model store is chosen (main.c), and in tests after a reboot. */
void nvstate_boot(void);
/* 1 when the board has the memory (board_nv()). */
int nvstate_available(void);
/* The newest intact record's state (all zero when there is none, or no memory). */
const nv_state *nvstate(void);
/* A copy of the state to change and give to nvstate_put (one static draft, shared by its users: 640 B). */
nv_state *nvstate_edit(void);
/* Keep `next`: 0 once it is in the memory (and nvstate() returns it), else a reason; the old state stays. */
const char *nvstate_put(const nv_state *next);

#endif
