"""Keras 3 architectures whose TFLite export exercises the compiler's passes on real converter output:
ZeroPadding2D + MaxPool2D after ReLU6 (PAD fusion into MAX_POOL_2D), Conv1D (EXPAND_DIMS/RESHAPE views), Dense on
sequences (shape sub-graphs, ADD of a constant bias, MEAN), gating with MUL, HARD_SWISH, and an UpSampling2D model
the blob format cannot hold (rank-5 tensors: a clear compile error).

    python tests/compiler/keras_models.py      # -> tests/compiler/models/<name>.tflite (committed)

Seeded (weights and representative data), so regenerating gives models that compute the same functions.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent / "models"
SEED = 4321


def mbv2_block(k, L):  # PAD+CONV_2D, ReLU6, PAD+MAX_POOL_2D, pointwise/depthwise, residual ADD, MEAN, SOFTMAX
    i = k.Input((32, 32, 3))
    x = L.ZeroPadding2D(1)(i)
    x = L.Conv2D(8, 3, strides=2)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.MaxPooling2D(3, 2)(x)
    y = L.Conv2D(16, 1, activation="relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same")(y)
    y = L.ReLU(6.0)(y)
    y = L.Conv2D(8, 1)(y)
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(i, L.Dense(5, activation="softmax")(x)), (32, 32, 3)


def conv1d(k, L):  # EXPAND_DIMS -> CONV_2D -> RESHAPE chains, MAX_POOL_2D, Flatten sub-graph, LOGISTIC
    i = k.Input((40, 10))
    x = L.Conv1D(16, 3, activation="relu")(i)
    x = L.Conv1D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.Flatten()(x)
    return k.Model(i, L.Dense(4, activation="sigmoid")(x)), (40, 10)


def seq_gated(k, L):  # Dense on 3-D inputs (FC + ADD const bias), TANH, LEAKY_RELU, CONCATENATION, MUL, MEAN
    i = k.Input((6, 8))
    a = L.Dense(12, activation="tanh")(i)
    b = L.LeakyReLU(0.1)(L.Dense(12)(i))
    x = L.Concatenate()([a, b])
    x = L.Multiply()([x, L.Dense(24, activation="sigmoid")(x)])
    x = L.GlobalAveragePooling1D()(x)
    return k.Model(i, L.Dense(3)(x)), (6, 8)


def avg_hswish(k, L):  # HARD_SWISH, AVERAGE_POOL_2D VALID, Reshape sub-graph, standalone SOFTMAX
    i = k.Input((16, 16, 4))
    x = L.Conv2D(8, 3, activation="hard_swish")(i)
    x = L.AveragePooling2D(2)(x)
    x = L.Reshape((7 * 7 * 8,))(x)
    return k.Model(i, L.Softmax()(L.Dense(10)(x))), (16, 16, 4)


def upsample(k, L):  # UpSampling2D: exported through rank-5 tensors, which blobs cannot hold
    i = k.Input((8, 8, 2))
    x = L.Conv2D(4, 3, padding="same")(i)
    return k.Model(i, L.UpSampling2D()(x)), (8, 8, 2)


MODELS = {f.__name__: f for f in (mbv2_block, conv1d, seq_gated, avg_hswish, upsample)}


def build(name):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    model, shape = MODELS[name](keras, keras.layers)
    rng = np.random.default_rng(SEED)

    def representative():
        for _ in range(32):
            yield [rng.normal(size=(1,) + shape).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name in sys.argv[1:] or MODELS:
        (OUT / (name + ".tflite")).write_bytes(build(name))
        print(name)
