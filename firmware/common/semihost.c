/* ARM semihosting calls (semihost.h; "Semihosting for AArch32 and AArch64", ARM DUI 0058 / IHI 0034): r0 the
 * operation, r1 a block of arguments, BKPT 0xAB, result in r0. */
#include <string.h>

#include "semihost.h"

enum { SYS_OPEN = 0x01, SYS_WRITE = 0x05, SYS_READ = 0x06, SYS_SEEK = 0x0A, SYS_FLEN = 0x0C,
       SYS_GET_CMDLINE = 0x15, SYS_EXIT = 0x18 };
#define OPEN_RW_BINARY 3u                 /* "r+b" */
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int32_t call(uint32_t op, const void *args)
{
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = args;
    __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

/* A BKPT nobody serves raises DebugMonitor, or HardFault when that is not enabled: if it was a semihosting call,
 * fail it (r0 = -1) and continue after it; any other fault stops here, as the startup code's default does. */
void semihost_fault(uint32_t *frame) __attribute__((used));
void semihost_fault(uint32_t *frame)
{
    const uint16_t *pc = (const uint16_t *)frame[6];
    if (*pc == 0xBEABu) {
        frame[0] = 0xFFFFFFFFu;
        frame[6] += 2u;
        return;
    }
    for (;;) {
    }
}

/* exception entry: the stacked frame is on the main stack (the firmware never uses the process stack) */
__attribute__((naked)) void HardFault_Handler(void) { __asm volatile("mrs r0, msp\n\tb semihost_fault"); }
__attribute__((naked)) void DebugMon_Handler(void) { __asm volatile("mrs r0, msp\n\tb semihost_fault"); }

int semihost_arg(const char *key, char *out, uint32_t cap)
{
    static char line[256];
    static int have = -1;
    struct { char *buf; uint32_t len; } args = {line, sizeof line - 1};
    uint32_t klen = (uint32_t)strlen(key), i = 0, n;
    if (have < 0) {
        have = call(SYS_GET_CMDLINE, &args) == 0;
        line[have ? (args.len < sizeof line ? args.len : sizeof line - 1) : 0] = 0;
    }
    while (have && line[i]) {
        while (line[i] == ' ')
            i++;
        for (n = 0; line[i + n] && line[i + n] != ' '; n++) {
        }
        if (n > klen && !memcmp(line + i, key, klen) && n - klen < cap) {
            memcpy(out, line + i + klen, n - klen);
            out[n - klen] = 0;
            return 1;
        }
        i += n;
    }
    return 0;
}

int semihost_open(const char *path)
{
    struct { const char *name; uint32_t mode, len; } args = {path, OPEN_RW_BINARY, (uint32_t)strlen(path)};
    return call(SYS_OPEN, &args);
}

int32_t semihost_length(int handle)
{
    uint32_t args[1] = {(uint32_t)handle};
    return call(SYS_FLEN, args);
}

static int seek(int handle, uint32_t at)
{
    uint32_t args[2] = {(uint32_t)handle, at};
    return call(SYS_SEEK, args) == 0 ? 0 : -1;
}

int semihost_read(int handle, uint32_t at, void *p, uint32_t n)
{
    struct { uint32_t h; void *buf; uint32_t len; } args = {(uint32_t)handle, p, n};
    return seek(handle, at) == 0 && call(SYS_READ, &args) == 0 ? 0 : -1; /* returns the bytes NOT read */
}

int semihost_write(int handle, uint32_t at, const void *p, uint32_t n)
{
    struct { uint32_t h; const void *buf; uint32_t len; } args = {(uint32_t)handle, p, n};
    return seek(handle, at) == 0 && call(SYS_WRITE, &args) == 0 ? 0 : -1;
}

void semihost_exit(void)
{
    call(SYS_EXIT, (const void *)ADP_STOPPED_APPLICATION_EXIT);
    for (;;) {
    }
}
