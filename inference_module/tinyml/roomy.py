# A streamed model's larger weight buffer (model.load's default), imported only when the heap has room to spare:
# on a tight heap its code costs nothing (in conv.py it cost IC 1 KB more heap as .mpy: the driver's input read
# found no hole).

from . import ops as O
from .blob import T_BYTES
from .conv import VB


def grow(prog, wlen, most):
    # A streamed op's weights come in reads of at most the weight buffer's size, each a system call on a file
    # (AD: 274 KB per inference in ~75 reads at 4 KB, ~60 % of its streamed overhead over RAM). Once the load is
    # done, a heap with room to spare gets a larger buffer (model.load's default): no larger than the largest
    # filter tensor or `most`. model.py imports this only when 8 times the growth is free (garbage not counted),
    # so a tight heap keeps the small one, pays nothing for this code, and the smallest heap a model runs in does
    # not change. None: keep the buffer.
    want = 0
    T = prog.tensors
    for op in prog.ops:  # (a PATCH stage's filters are an early layer's: small)
        if op[0] == O.CONV_2D or op[0] == O.FULLY_CONNECTED:
            want = max(want, T[op[1][1]][T_BYTES])
    want = (min(want, most) + 3) & ~3
    if want <= wlen:
        return None
    try:
        return bytearray(want + 12 * VB)
    except MemoryError:
        return None
