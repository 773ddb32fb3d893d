"""Structured channel pruning of Keras models (backends/prune.py)."""

import numpy as np
import pytest

from tinymlaas.backends import BackendError
from tinymlaas.backends.prune import macs, prune_and_finetune, prune_channels


def test_removing_dead_channels_keeps_outputs(quadrant):
    """Zero half of each hidden layer's filters: pruning 50% must remove exactly those and change no output,
    which checks the index bookkeeping through BatchNorm-free Conv2D -> DepthwiseConv2D -> Flatten -> Dense."""
    import keras
    keras.utils.set_random_seed(1)
    m = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a"),
        keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
        keras.layers.Conv2D(6, 1, activation="relu", name="conv_b"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="relu", name="fc"),
        keras.layers.Dense(3, name="logits"),
    ])
    rng = np.random.default_rng(0)
    dead = {"conv_a": [1, 2, 5, 6], "conv_b": [0, 3, 4], "fc": [0, 2, 4, 6, 8]}
    for layer in m.layers:
        w = layer.get_weights()
        if layer.name in dead:
            w[0] = w[0] + np.sign(w[0]) * 0.05 + 0.01 * rng.random(w[0].shape)   # live channels: clearly non-zero
            w[0][..., dead[layer.name]] = 0.0
            w[1][dead[layer.name]] = 0.0
            layer.set_weights(w)
    pruned, changed = prune_channels(m, 0.5)
    assert changed == {"conv_a": (8, 4), "conv_b": (6, 3), "fc": (10, 5), "logits": (3, 3)}
    # Depthwise follows conv2d's kept channels with both of its multiplier outputs.
    depthwise = [l for l in pruned.layers if type(l).__name__ == "DepthwiseConv2D"][0]
    assert depthwise.get_weights()[0].shape == (3, 3, 4, 2)
    x = quadrant["x_val"][:64]
    np.testing.assert_allclose(pruned.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    assert macs(pruned) < macs(m) / 2


def test_prune_and_finetune_reports_accuracy_macs_and_size(small_cnn, quadrant):
    pruned, r = prune_and_finetune(small_cnn, 0.5, quadrant["x_train"], quadrant["y_train"], quadrant["x_val"],
                                   quadrant["y_val"], epochs=3)
    assert r.channels_after == {"conv_a": 6, "conv_b": 6, "fc": 8, "logits": 4}
    assert r.macs_after < 0.5 * r.macs_before
    assert r.params_after < 0.5 * r.params_before
    assert pruned.output_shape == small_cnn.output_shape
    assert r.accuracy_before > 0.7                      # 4 classes: chance is 0.25
    assert r.accuracy_after > r.accuracy_pruned         # fine-tuning recovers what pruning lost
    assert r.accuracy_after > 0.6


def test_prune_rejects_what_it_cannot_prune():
    import keras
    inp = keras.Input((8,))
    a = keras.layers.Dense(4)(inp)
    b = keras.layers.Dense(4)(inp)
    residual = keras.Model(inp, keras.layers.Add()([a, b]))
    with pytest.raises(BackendError):
        prune_channels(residual, 0.5)
    with pytest.raises(BackendError, match="must be in"):
        prune_channels(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), 1.0)
