"""Build the test corpus: tiny Keras 3 models covering every op and parameter variant of docs/blob-format.md,
converted with the real TFLite converter (full-integer post-training quantization, seeded representative data).

    python tests/corpus/generate.py            # all models -> tests/corpus/models/<name>.tflite
    python tests/corpus/generate.py conv_same  # only the named ones

Everything is seeded (weights, representative dataset), so a regenerated model computes the same function. The
files are committed; the generator exists so the corpus can be extended and so a test proves it still runs.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parent / "models"
SEED = 1234
CALIBRATION_SAMPLES = 32


def _keras():
    import keras

    return keras


# Each builder returns a Keras model. `float_io` models keep float32 inputs/outputs (QUANTIZE/DEQUANTIZE ops).
# Models are named after what they exercise; the comment says which TFLite ops and parameters they produce.


def conv_same_stride2(k):  # CONV_2D 3x3 stride 2, SAME, non-square input, fused RELU
    i = k.Input((9, 7, 2))
    return k.Model(i, k.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(i))


def conv_pad_small_odd(k):  # CONV_2D 5x4 stride 2 SAME on 13 x 6 x 1 (KWS's first layer in small), then a 1x1 CONV_2D
    # over its 21 pixels (odd) from 72 channels: the M4 pads the small input once, runs an odd last pixel alone
    i = k.Input((13, 6, 1))
    x = k.layers.Conv2D(72, (5, 4), strides=2, padding="same")(i)
    return k.Model(i, k.layers.Conv2D(8, 1)(x))


def conv_pad_dilated_rows(k):  # CONV_2D 3x2 dilation (2,1) SAME on 9 x 7 x 2: padded once on the M4, 63 pixels (odd)
    i = k.Input((9, 7, 2), batch_size=1)
    return k.Model(i, k.layers.Conv2D(6, (3, 2), dilation_rate=(2, 1), padding="same")(i))


def conv_valid_dilated(k):  # CONV_2D 2x3 kernel, dilation 2, VALID, no bias, no activation
    # A static batch lets the converter fold SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND into one dilated CONV_2D;
    # with a dynamic batch the three ops (plus a separate bias ADD) stay in the model.
    i = k.Input((10, 8, 3), batch_size=1)
    return k.Model(i, k.layers.Conv2D(3, (2, 3), dilation_rate=2, padding="valid", use_bias=False)(i))


def conv_same_dilated(k):  # CONV_2D 3x3 dilation (2,3), SAME
    i = k.Input((9, 10, 2), batch_size=1)
    return k.Model(i, k.layers.Conv2D(4, 3, dilation_rate=(2, 3), padding="same")(i))


def conv_stride_nonsquare_relu6(k):  # CONV_2D stride (2,1), 1x3 kernel, SAME, fused RELU6
    i = k.Input((6, 5, 4))
    x = k.layers.Conv2D(5, (1, 3), strides=(2, 1), padding="same")(i)
    return k.Model(i, k.layers.ReLU(6.0)(x))


def depthwise_dm2(k):  # DEPTHWISE_CONV_2D depth multiplier 2, SAME, stride 1
    i = k.Input((8, 6, 3))
    return k.Model(i, k.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu")(i))


def depthwise_stride2_valid(k):  # DEPTHWISE_CONV_2D stride 2, VALID, non-square kernel
    i = k.Input((9, 9, 4))
    return k.Model(i, k.layers.DepthwiseConv2D((3, 2), strides=2, padding="valid")(i))


def depthwise3x3_odd(k):  # DEPTHWISE_CONV_2D 3x3 SAME stride 1 on an odd 9 x 5 input (the M4 lays its planes transposed)
    i = k.Input((9, 5, 8))
    return k.Model(i, k.layers.DepthwiseConv2D(3, padding="same")(i))


def fc_rows(k):  # FULLY_CONNECTED on a [1,3,5] input: rows > 1 (static batch: no shape sub-graph)
    i = k.Input((3, 5), batch_size=1)
    return k.Model(i, k.layers.Dense(4)(i))


def fc_rows_dynamic_batch(k):  # Dense on 3-D input with a dynamic batch: SHAPE/GATHER/REDUCE_PROD/PACK/RESHAPE
    # TFLite Micro has no REDUCE_PROD, so it cannot load this model: the verifier falls back to LiteRT's
    # reference kernels. The compiler folds the whole shape sub-graph to constants.
    i = k.Input((3, 5))
    return k.Model(i, k.layers.Dense(4)(i))


def fc_no_bias_softmax(k):  # FULLY_CONNECTED without bias, then SOFTMAX
    i = k.Input((12,))
    return k.Model(i, k.layers.Dense(6, use_bias=False, activation="softmax")(i))


def fc_logistic_tanh(k):  # FULLY_CONNECTED, LOGISTIC, FULLY_CONNECTED, TANH
    i = k.Input((8,))
    x = k.layers.Dense(8, activation="sigmoid")(i)
    return k.Model(i, k.layers.Dense(5, activation="tanh")(x))


def avgpool_wide(k):  # AVERAGE_POOL_2D 3x3 stride 2 SAME on 23 channels: the M4's 16-, 4- and 1-channel passes
    i = k.Input((7, 6, 23))
    return k.Model(i, k.layers.AveragePooling2D(3, strides=2, padding="same")(i))


def avgpool_same(k):  # AVERAGE_POOL_2D 3x3 stride 2 SAME (clipped windows at the edge)
    i = k.Input((7, 6, 3))
    return k.Model(i, k.layers.AveragePooling2D(3, strides=2, padding="same")(i))


def maxpool_valid(k):  # MAX_POOL_2D 2x2 VALID, and 3x2 SAME stride 1
    i = k.Input((8, 7, 2))
    x = k.layers.MaxPooling2D(2, padding="valid")(i)
    return k.Model(i, k.layers.MaxPooling2D((3, 2), strides=1, padding="same")(x))


def add_residual(k):  # ADD of two tensors with different scales, fused RELU
    i = k.Input((6, 6, 4))
    x = k.layers.Conv2D(4, 3, padding="same")(i)
    y = k.layers.Add()([i, x])
    return k.Model(i, k.layers.ReLU()(y))


def mul_broadcast(k):  # MUL with broadcasting: [1,H,W,C] x [1,1,1,C] (squeeze-and-excite style gate)
    i = k.Input((5, 4, 6), batch_size=1)
    g = k.layers.GlobalAveragePooling2D(keepdims=True)(i)  # MEAN
    g = k.layers.Dense(6, activation="sigmoid")(g)
    return k.Model(i, k.layers.Multiply()([i, g]))


def add_broadcast_two_inputs(k):  # two graph inputs, ADD broadcasting [1,4,4,3] + [1,1,4,3]
    # The converter orders inputs by name; name them so that order is the Keras order.
    a = k.Input((4, 4, 3), name="in_a")
    b = k.Input((1, 4, 3), name="in_b")
    return k.Model([a, b], k.layers.Add()([a, b]))


def flatten_dense(k):  # Keras 3 Flatten: a SHAPE/STRIDED_SLICE/PACK/RESHAPE sub-graph, then FULLY_CONNECTED
    i = k.Input((4, 3, 2))
    x = k.layers.Flatten()(i)
    return k.Model(i, k.layers.Dense(5)(x))


def reshape_softmax(k):  # RESHAPE then SOFTMAX over the last axis of a [1,4,6] tensor (4 rows)
    i = k.Input((24,))
    x = k.layers.Dense(24)(i)
    x = k.layers.Reshape((4, 6))(x)
    return k.Model(i, k.layers.Softmax(axis=-1)(x))


def relu_relu6_standalone(k):  # CONCATENATION then standalone RELU and RELU6 (nothing to fuse into)
    i = k.Input((5, 5, 2))
    a = k.layers.Conv2D(3, 1)(i)
    b = k.layers.Conv2D(2, 3, padding="same")(i)
    x = k.layers.Concatenate()([a, b])
    r = k.layers.ReLU()(x)
    r6 = k.layers.ReLU(6.0)(x)
    return k.Model(i, k.layers.Concatenate(axis=1)([r, r6]))


def pad_conv(k):  # PAD (ZeroPadding2D, asymmetric) then CONV_2D VALID
    i = k.Input((5, 6, 2))
    x = k.layers.ZeroPadding2D(((1, 2), (0, 1)))(i)
    return k.Model(i, k.layers.Conv2D(3, 3, padding="valid")(x))


def pad_maxpool(k):  # PAD that no consumer can absorb (MAX_POOL_2D must see the padded zeros)
    i = k.Input((4, 5, 3))
    x = k.layers.ZeroPadding2D(((2, 0), (1, 1)))(i)
    return k.Model(i, k.layers.MaxPooling2D(2)(x))


def reshape_only(k):  # graph output = RESHAPE of the graph input: the compiler emits COPY
    i = k.Input((4, 6), batch_size=1)
    return k.Model(i, k.layers.Reshape((3, 8))(i))


def mean_spatial(k):  # MEAN over H and W (GlobalAveragePooling2D), then FULLY_CONNECTED
    i = k.Input((6, 5, 8))
    x = k.layers.GlobalAveragePooling2D()(i)
    return k.Model(i, k.layers.Dense(3)(x))


def concat_channels(k):  # CONCATENATION along channels of branches with different scales
    i = k.Input((4, 4, 3))
    a = k.layers.Conv2D(2, 1)(i)
    b = k.layers.DepthwiseConv2D(3, padding="same")(i)
    return k.Model(i, k.layers.Concatenate()([a, b, i]))


def leaky_hard_swish(k):  # LEAKY_RELU and HARD_SWISH (lowered to LUT)
    i = k.Input((10,))
    x = k.layers.Dense(10)(i)
    x = k.layers.LeakyReLU(negative_slope=0.2)(x)
    x = k.layers.Dense(10)(x)
    return k.Model(i, k.layers.Activation("hard_swish")(x))


def float_io_cnn(k):  # float32 inputs and outputs: QUANTIZE in, DEQUANTIZE out
    i = k.Input((6, 6, 1))
    x = k.layers.Conv2D(4, 3, activation="relu")(i)
    x = k.layers.Flatten()(x)
    return k.Model(i, k.layers.Dense(3, activation="softmax")(x))


def float_io_dense(k):  # float32 I/O around a tiny MLP
    i = k.Input((7,))
    x = k.layers.Dense(6, activation="relu")(i)
    return k.Model(i, k.layers.Dense(2)(x))


MODELS = {
    f.__name__: f
    for f in (conv_same_stride2, conv_pad_small_odd, conv_pad_dilated_rows, conv_valid_dilated, conv_same_dilated, conv_stride_nonsquare_relu6,
              depthwise_dm2, depthwise_stride2_valid, depthwise3x3_odd, fc_rows, fc_rows_dynamic_batch, fc_no_bias_softmax,
              fc_logistic_tanh, avgpool_same, avgpool_wide, maxpool_valid, add_residual, mul_broadcast, add_broadcast_two_inputs, flatten_dense, reshape_softmax,
              relu_relu6_standalone, pad_conv, pad_maxpool, reshape_only, mean_spatial, concat_channels,
              leaky_hard_swish, float_io_cnn, float_io_dense)
}
FLOAT_IO = {"float_io_cnn", "float_io_dense"}
# Calibration range of every corpus model's float inputs; the verify runner draws float inputs from it.
INPUT_RANGE = (-1.0, 1.0)


def build(name):
    """The Keras model `name`, with seeded weights (bias included, so bias paths are exercised)."""
    k = _keras()
    k.backend.clear_session()  # resets layer-name counters: names end up in the .tflite
    k.utils.set_random_seed(SEED)
    model = MODELS[name](k)
    rng = np.random.default_rng(SEED)
    weights = []
    for w in model.get_weights():
        weights.append(rng.normal(0.0, 0.5, w.shape).astype(np.float32))
    model.set_weights(weights)
    return model


def convert(name):
    """Return the .tflite bytes of corpus model `name`."""
    import tensorflow as tf

    model = build(name)
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]
    names = [t.name for t in model.inputs]

    def representative():
        # A dict keyed by input name: the converter's signature may order several inputs differently from Keras.
        rng = np.random.default_rng(SEED + 1)
        for _ in range(CALIBRATION_SAMPLES):
            yield {n: rng.uniform(*INPUT_RANGE, (1,) + s).astype(np.float32) for n, s in zip(names, shapes)}

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if name not in FLOAT_IO:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def generate(names=None, out_dir=MODELS_DIR):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or MODELS:
        data = convert(name)
        path = out_dir / (name + ".tflite")
        path.write_bytes(data)
        written.append(path)
        print("%-32s %6d bytes" % (path.name, len(data)))
    return written


if __name__ == "__main__":
    unknown = [n for n in sys.argv[1:] if n not in MODELS]
    if unknown:
        sys.exit("unknown corpus model(s): %s (known: %s)" % (", ".join(unknown), ", ".join(MODELS)))
    generate(sys.argv[1:] or None)
