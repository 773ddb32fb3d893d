/* ARM semihosting: the debugger calls (file I/O, command line, exit) that QEMU serves when started with
 * `-semihosting-config enable=on,target=native`. The firmware uses them only for the emulated non-volatile memory
 * (nvm.h): on a board nothing calls them unless the board's own flash is absent. Without a debugger or QEMU's
 * semihosting the BKPT that makes a call faults; the fault handler here turns that into a failed call (-1), so
 * one binary runs with and without it. */
#ifndef SEMIHOST_H
#define SEMIHOST_H

#include <stdint.h>

/* The value of `key=value` (key given with its '=') in the semihosting command line into out (NUL-terminated) ->
 * 1, or 0: no such argument, no semihosting. */
int semihost_arg(const char *key, char *out, uint32_t cap);
/* A host file opened for reading and writing in place ("r+b") -> handle, or -1. */
int semihost_open(const char *path);
int32_t semihost_length(int handle);
/* Whole transfers at byte offset `at` -> 0, or -1. */
int semihost_read(int handle, uint32_t at, void *p, uint32_t n);
int semihost_write(int handle, uint32_t at, const void *p, uint32_t n);
/* Stop the emulator (QEMU exits): the emulated power cut. */
void semihost_exit(void) __attribute__((noreturn));

#endif
