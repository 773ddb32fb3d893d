"""Generated machine-vibration data for the predictive-maintenance demo model.

A rotating machine at 20–40 Hz sampled at 1 kHz; each window is 256 samples. Classes:
    0 normal        shaft frequency and a weak 2x harmonic, broadband noise
    1 imbalance     strong 1x component
    2 misalignment  strong 2x and 3x components
    3 bearing fault periodic impacts exciting a 180–260 Hz resonance
Features are the magnitudes of 64 spectral bands (log scale), which is what a device computes from its
accelerometer before calling the model.
"""

import numpy as np

CLASSES = ["normal", "imbalance", "misalignment", "bearing"]
RATE = 1000
WINDOW = 256
BANDS = 64


def signal(kind, rng):
    t = np.arange(WINDOW) / RATE
    f = rng.uniform(20, 40)
    phase = rng.uniform(0, 2 * np.pi, 4)
    x = 0.4 * np.sin(2 * np.pi * f * t + phase[0]) + 0.08 * np.sin(4 * np.pi * f * t + phase[1])
    if kind == 1:
        x += rng.uniform(0.1, 1.2) * np.sin(2 * np.pi * f * t + phase[0])
    elif kind == 2:
        x += rng.uniform(0.05, 0.8) * np.sin(4 * np.pi * f * t + phase[1])
        x += rng.uniform(0.2, 0.5) * np.sin(6 * np.pi * f * t + phase[2])
    elif kind == 3:
        res = rng.uniform(180, 260)
        period = rng.uniform(0.02, 0.04)
        for t0 in np.arange(rng.uniform(0, period), t[-1], period):
            dt = t - t0
            m = dt >= 0
            x[m] += rng.uniform(0.1, 0.8) * np.exp(-dt[m] * 120) * np.sin(2 * np.pi * res * dt[m])
    return x + rng.normal(0, 0.3, WINDOW)


def features(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))[1:]          # 128 bins
    bands = spec[: BANDS * 2].reshape(BANDS, 2).mean(axis=1)
    return np.log1p(bands).astype(np.float32)


def dataset(n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    X = np.stack([features(signal(int(k), rng)) for k in y])
    return X, y.astype(np.int64)
