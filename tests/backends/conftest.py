"""Small float Keras models trained in seconds on generated data (seeded), shared by the back-end tests."""

import numpy as np
import pytest


def quadrant_data(n=900, seed=0, size=8):
    """Images whose label is the quadrant with the largest mean: learnable by a tiny CNN in a few epochs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 1)).astype(np.float32)
    h = size // 2
    means = np.stack([x[:, :h, :h].mean((1, 2, 3)), x[:, :h, h:].mean((1, 2, 3)),
                      x[:, h:, :h].mean((1, 2, 3)), x[:, h:, h:].mean((1, 2, 3))], axis=1)
    return x, means.argmax(axis=1).astype(np.int64)


@pytest.fixture(scope="session")
def quadrant():
    x, y = quadrant_data()
    return {"x_train": x[:700], "y_train": y[:700], "x_val": x[700:], "y_val": y[700:]}


@pytest.fixture(scope="session")
def small_cnn(quadrant):
    """A trained float CNN with Conv2D, BatchNorm, DepthwiseConv2D, pooling, Flatten and Dense layers."""
    import keras
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(12, 3, padding="same", name="conv_a"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(12, 1, activation="relu", name="conv_b"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(4, name="logits"),
    ])
    m.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(quadrant["x_train"], quadrant["y_train"], epochs=12, batch_size=32, verbose=0)
    return m


@pytest.fixture(scope="session")
def small_cnn_bytes(small_cnn, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "small.keras"
    small_cnn.save(path)
    return path.read_bytes()
