"""Compiler passes over the IR, in the order `compiler.compile_graph` runs them:

1. fold_constants  -- evaluate shape sub-graphs (SHAPE, STRIDED_SLICE, PACK, ...) into constants, drop dead ops
2. views           -- RESHAPE / SQUEEZE / EXPAND_DIMS become free views of their input's bytes
3. lut             -- every int8 -> int8 elementwise op becomes a LUT with TFLM's exact table
4. fuse            -- PAD into the following convolution; LUTs that are a clamp into the producer's act range
5. lower           -- integer parameters (multipliers, shifts, padding, tables) as TFLM computes them
6. planner         -- one arena, static offsets (in backend)
"""
