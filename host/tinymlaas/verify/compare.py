"""Compare a runtime's outputs with the judge's, element by element, and summarize."""

import numpy as np


def compare(expected_sets, got_sets):
    """Both: list (one per input set) of lists (one per model output) of arrays.

    Returns dict: bit_exact, max_abs_diff, mismatches (differing elements over all sets), elements, first_mismatch.
    Float outputs are bit-exact only when every float32 bit pattern matches.
    """
    if len(expected_sets) != len(got_sets):
        raise ValueError("%d reference results but %d runtime results" % (len(expected_sets), len(got_sets)))
    mismatches = 0
    elements = 0
    max_diff = 0.0
    first = None
    for n, (exp_outs, got_outs) in enumerate(zip(expected_sets, got_sets)):
        if len(exp_outs) != len(got_outs):
            raise ValueError("input set %d: %d reference outputs, runtime gave %d" % (n, len(exp_outs),
                                                                                         len(got_outs)))
        for k, (e, g) in enumerate(zip(exp_outs, got_outs)):
            e = np.asarray(e)
            g = np.asarray(g)
            if e.size != g.size:
                raise ValueError("input set %d output %d: %d reference elements, runtime gave %d"
                                 % (n, k, e.size, g.size))
            e = e.reshape(-1)
            g = g.reshape(-1).astype(e.dtype, copy=False)
            if e.dtype.kind == "f":
                differs = e.view(np.uint32 if e.itemsize == 4 else np.uint64) != g.view(
                    np.uint32 if e.itemsize == 4 else np.uint64)
            else:
                differs = e != g
            diff = np.abs(e.astype(np.float64) - g.astype(np.float64))
            count = int(differs.sum())
            elements += e.size
            if count:
                mismatches += count
                max_diff = max(max_diff, float(diff[differs].max()))
                if first is None:
                    i = int(np.argmax(differs))
                    first = {"input_set": n, "output": k, "index": i, "expected": e[i].item(),
                             "got": g[i].item()}
    return {
        "bit_exact": mismatches == 0,
        "max_abs_diff": max_diff,
        "mismatches": mismatches,
        "elements": elements,
        "first_mismatch": first,
    }
