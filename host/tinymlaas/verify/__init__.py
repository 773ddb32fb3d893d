"""Bit-exactness verification of compiled blobs against TensorFlow Lite Micro.

* `inputs`   -- seeded test inputs drawn from the model's own input description;
* `judge`    -- the reference: TFLite Micro, or TFLite's reference kernels (LiteRT BUILTIN_REF) for a model TFLite
               Micro cannot load;
* `runtimes` -- the runtimes under test behind one small interface (`run(blob, inputs) -> outputs`): the host
               NumPy executor, the MicroPython runtime in the real `micropython` process, and the C runtimes;
* `compare`  -- the comparison and its report (used by `tinymlaas verify`, the tests and the benchmarks).
"""
