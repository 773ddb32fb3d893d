"""The drift scenario's data (learning/drift.py): machine B shows machine A's states 1.5x faster plus its mount's
structural mode; the labelled subset an operator gives is balanced."""

import numpy as np

from tinymlaas.demo import vibration as V
from tinymlaas.learning import drift


def band(X, lo, hi):
    """Mean FFT magnitude of windows X between lo and hi Hz."""
    spec = np.abs(np.fft.rfft(X.reshape(len(X), -1), axis=1))
    return float(spec[:, int(lo * V.WINDOW / V.RATE):int(hi * V.WINDOW / V.RATE)].mean())


def fault_excess(X, y, lo, hi):
    """What bearing-fault windows hold in a band beyond normal windows (the noise floor taken out)."""
    return band(X[y == 3], lo, hi) - band(X[y == 0], lo, hi)


def test_machine_b_is_machine_a_faster_with_a_mode():
    Xa, ya = drift.dataset(300, "A", seed=3)
    Xb, yb = drift.dataset(300, "B", seed=3)
    assert Xa.shape == Xb.shape == (300, 256, 1, 1) and Xb.dtype == np.float32
    assert np.array_equal(ya, yb)                        # the same states, window by window
    assert np.array_equal(Xa, V.waveform_dataset(300, seed=3)[0])       # A is the demo's data
    # the bearing resonance (A 180-260 Hz) moves up with the stretch (B 270-390 Hz)
    assert fault_excess(Xa, ya, 180, 260) > 2 * fault_excess(Xa, ya, 300, 390)
    assert fault_excess(Xb, yb, 300, 390) > 2 * fault_excess(Xb, yb, 180, 240)
    assert band(Xb[yb == 0], 95, 105) > 2 * band(Xa[ya == 0], 95, 105)      # the mount's mode


def test_balanced_labels():
    X, y = drift.dataset(200, "B", seed=1)
    pick = drift.balanced(X, y, 10, seed=0)
    assert len(set(pick)) == 10
    counts = np.bincount(y[pick], minlength=4)
    assert counts.max() - counts.min() <= 1
