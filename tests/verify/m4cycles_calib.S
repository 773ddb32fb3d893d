/* Calibration kernels for the Cortex-M4 cycle model (tests/verify/test_m4cycles.py). Each kernel's cycle count
 * follows from the Cortex-M4 TRM's timings alone (table 3-1, section 3.3.2); the comments give them, with P the
 * pipeline refill of a taken branch. Run semihosted on qemu -M mps2-an386; the test asserts the model's counts. */
    .syntax unified
    .thumb
    .text
vectors:
    .word 0x20008000
    .word Reset_Handler + 1
    .space 0x38

    .thumb_func
    .global Reset_Handler
Reset_Handler:
    bl k_alu
    ldr r0, =buf
    bl k_loads
    ldr r0, =buf
    bl k_multi
    ldr r0, =buf
    bl k_loop
    bl k_div
    bl k_cbz
    movs r0, #0x18      /* SYS_EXIT, ADP_Stopped_ApplicationExit */
    ldr r1, =0x20026
    bkpt 0xab
    .ltorg

    .thumb_func
k_alu:                  /* 9 + P */
    adds r0, #1         /* 1 */
    adds r0, #1         /* 1 */
    add.w r1, r1, r2    /* 1 */
    movw r3, #100       /* 1 */
    smlad r4, r0, r1, r4 /* 1 */
    mul r5, r0, r1      /* 1 */
    smull r6, r7, r0, r1 /* 1 */
    sxtb16 r6, r6, ror #8 /* 1 */
    bx lr               /* 1 + P */

    .thumb_func
k_loads:                /* 17 + P */
    ldr r1, [r0]        /* 2 */
    ldr r2, [r0, #4]    /* 1: pipelined behind the LDR */
    ldrb r3, [r0, #8]   /* 1 */
    adds r1, r2         /* 1 */
    ldr r2, [r0, #12]   /* 2: follows an ALU instruction; loads 0 */
    ldr r3, [r0, r2]    /* 2: its address uses the previous load's result */
    str r3, [r0, #24]   /* 1: store with immediate offset */
    ldr r1, [r0]        /* 2: nothing pipelines behind a store */
    str r1, [r0, r2]    /* 1: register-offset store pipelined behind the LDR */
    ldrd r2, r3, [r0]   /* 3 */
    bx lr               /* 1 + P */

    .thumb_func
k_multi:                /* 20 + P */
    push {r4-r7, lr}    /* 1 + 5 */
    ldm r0, {r1-r3}     /* 1 + 3 */
    stm r0, {r1-r3}     /* 1 + 3 */
    pop {r4-r7, pc}     /* 1 + 5 + P */

    .thumb_func
k_loop:                 /* 62 + 10 P: 10 iterations, 9 taken back-branches and the return */
    movs r3, #10        /* 1 */
1:  ldr r1, [r0]        /* 2 */
    ldr r2, [r0, #4]    /* 1 */
    smlad r4, r1, r2, r4 /* 1 */
    subs r3, #1         /* 1 */
    bne 1b              /* 1, + P when taken */
    bx lr               /* 1 + P */

    .thumb_func
k_div:                  /* 15 + P (UDIV at the TRM's upper bound, 12) */
    movs r1, #100       /* 1 */
    movs r2, #7         /* 1 */
    udiv r0, r1, r2     /* 12 */
    bx lr               /* 1 + P */

    .thumb_func
k_cbz:                  /* 3 + 2 P */
    movs r0, #0         /* 1 */
    cbz r0, 1f          /* 1 + P: taken */
    nop
1:  bx lr               /* 1 + P */

    .bss
    .align 3
buf: .space 64
