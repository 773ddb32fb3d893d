"""Generated machine-vibration data for the predictive-maintenance demo model.

A rotating machine at 20–40 Hz, accelerometer sampled at 1 kHz, windows of 256 samples. Classes:
    0 normal        shaft frequency and a weak 2x harmonic, broadband noise
    1 imbalance     stronger 1x component
    2 misalignment  stronger 2x and 3x components
    3 bearing fault periodic impacts exciting a 180–260 Hz resonance
The amplitudes overlap on purpose, so that a smaller (pruned) model loses some accuracy.
"""

import numpy as np

CLASSES = ["normal", "imbalance", "misalignment", "bearing"]
RATE = 1000
WINDOW = 256


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


def waveform_dataset(n, seed=0):
    """(X float32 [n, 256, 1, 1], y int64 [n]) of raw accelerometer windows (time along the first axis)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    X = np.stack([signal(int(k), rng) for k in y]).astype(np.float32)[..., None, None]
    return X, y.astype(np.int64)


def build_model(width=16):
    """A small CNN over the raw window, written with (k, 1) 2-D kernels as microcontroller models usually are;
    `width` sets the channel count (pruning removes channels)."""
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((WINDOW, 1, 1)),
        L.Conv2D(width, (7, 1), strides=1, activation="relu", padding="same"),
        L.MaxPooling2D((2, 1)),
        L.Conv2D(2 * width, (5, 1), strides=(2, 1), activation="relu", padding="same"),
        L.Conv2D(2 * width, (3, 1), strides=(2, 1), activation="relu", padding="same"),
        L.GlobalAveragePooling2D(),
        L.Dense(len(CLASSES), activation="softmax"),
    ])


BANDS = 32


def band_features(X):
    """[n, 32] float32 log band energies of raw windows ([n, 256, ...]): the 128 FFT bins below Nyquist in 32
    bands of 15.6 Hz — what a board's DSP front-end (or the sensor's own FFT) hands the anomaly model."""
    x = np.asarray(X, dtype=np.float64).reshape(len(X), WINDOW)
    power = np.abs(np.fft.rfft(x * np.hanning(WINDOW), axis=1)[:, :128]) ** 2
    bands = power.reshape(len(X), BANDS, -1).mean(axis=2)
    return (np.log10(bands + 1e-2) / 2).astype(np.float32)


def normal_features(n, seed=0):
    """Band features of n windows of the normal machine (class 0) only: what an anomaly model learns from."""
    rng = np.random.default_rng(seed)
    return band_features(np.stack([signal(0, rng) for _ in range(n)]))


def fault_features(n, seed=0):
    """Band features of n faulty windows (imbalance, misalignment, bearing in turn)."""
    rng = np.random.default_rng(seed)
    return band_features(np.stack([signal(1 + i % 3, rng) for i in range(n)]))


def autoencoder(normal, k=4):
    """A linear autoencoder over the band features, fitted to normal windows only (PCA: the encoder projects on the
    normal data's first k principal axes, the decoder maps back): it reconstructs normal windows well and faults
    badly, and its reconstruction error is the anomaly score (service/anomaly.py). Fitted in closed form, so it is
    deterministic and needs no training run; a Keras model, so it takes the int8 Keras path like any other."""
    import keras

    normal = np.asarray(normal, dtype=np.float64)
    mean = normal.mean(axis=0)
    axes = np.linalg.svd(normal - mean, full_matrices=False)[2][:k]          # [k, 32]
    model = keras.Sequential([keras.Input((BANDS,)), keras.layers.Dense(k), keras.layers.Dense(BANDS)])
    model.layers[0].set_weights([axes.T.astype(np.float32), (-mean @ axes.T).astype(np.float32)])
    model.layers[1].set_weights([axes.astype(np.float32), mean.astype(np.float32)])
    return model
