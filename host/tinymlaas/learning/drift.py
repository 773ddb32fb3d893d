"""A drift scenario for on-device learning (bench/learning_drift.py, docs/learning.md): the demo's vibration
classifier (demo/vibration.py) trained on machine A, deployed on machine B, whose mechanics differ:

    machine A  shaft 20-40 Hz, bearing-fault impacts ringing a 180-260 Hz resonance (the demo's data)
    machine B  the same states 1.5x faster: shaft 30-60 Hz (1x, 2x, 3x move up with it), bearing impacts
               ringing 270-390 Hz, plus a 95-105 Hz structural mode of its mount always present

The four classes mean the same on both machines; B's windows simply put their energy elsewhere, so A's model
misreads many of them. A head learning from a few labelled B windows on the device is the fix to measure.
"""

import numpy as np

from ..demo import vibration as V

STRETCH = 1.5            # machine B runs 1.5x faster: every frequency of A's window 1.5x higher
MODE_HZ = (95, 105)      # B's structural mode, always ringing


def machine_b(x, rng):
    """Machine A's window `x` (256 samples) as machine B shows the same state: its spectrum stretched by
    STRETCH (B's bin at f holds A's at f / STRETCH, interpolated), plus B's structural mode."""
    spec = np.fft.rfft(x)
    src = np.arange(len(spec)) / STRETCH
    stretched = np.interp(src, np.arange(len(spec)), spec.real) + 1j * np.interp(src, np.arange(len(spec)), spec.imag)
    t = np.arange(V.WINDOW) / V.RATE
    mode = rng.uniform(0.2, 0.4) * np.sin(2 * np.pi * rng.uniform(*MODE_HZ) * t + rng.uniform(0, 2 * np.pi))
    return np.fft.irfft(stretched, n=len(x)) + mode


def dataset(n, machine="A", seed=0):
    """(X float32 [n, 256, 1, 1], y int64 [n]) of windows from machine "A" (the demo's data) or "B"."""
    X, y = V.waveform_dataset(n, seed)
    if machine == "B":
        rng = np.random.default_rng(seed + 7919)
        X = np.stack([machine_b(w.reshape(-1), rng) for w in X]).astype(np.float32)[..., None, None]
    return X, y


def balanced(X, y, n, seed=0):
    """Indices of n samples with the classes as even as n allows (what an operator labels first)."""
    rng = np.random.default_rng(seed)
    per = [list(rng.permutation(np.flatnonzero(y == k))) for k in range(len(V.CLASSES))]
    out = []
    while len(out) < n:
        for p in per:
            if p and len(out) < n:
                out.append(p.pop())
    return np.array(out)


def train_on_a(n=2400, epochs=12, seed=0):
    """The demo's classifier (width 16) trained on machine A: (keras model, representative windows)."""
    import keras

    X, y = dataset(n, "A", seed)
    keras.utils.set_random_seed(seed)
    model = V.build_model(width=16)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X, y, epochs=epochs, batch_size=64, verbose=0)
    return model, X[:200]
