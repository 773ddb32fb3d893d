"""ONNX models written with onnx.helper the way torch.onnx.export lays them out (NCHW, Conv weights [M, C, kH, kW],
Gemm with transB=1, Flatten in C, H, W order), for the ONNX tests."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inits, x_shape, y_shape, opset, name):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tinymlaas-tests")
    onnx.checker.check_model(model)
    return model


def from_small_cnn(keras_model, opset=17):
    """The trained Keras fixture CNN (tests/backends/conftest.py) as PyTorch would export it: the same function of
    an NCHW input. BatchNormalization stays a node (as in a training-mode export) for the importer to fold."""
    conv_a, bn, _, dw, _, conv_b, _, fc, logits = keras_model.layers
    f32 = lambda a: np.asarray(a, np.float32)   # noqa: E731
    wa, ba = conv_a.get_weights()                       # [3, 3, 1, 12]
    gamma, beta, mean, var = bn.get_weights()
    wd, bd = dw.get_weights()                           # [3, 3, 12, 1]
    wb, bb = conv_b.get_weights()                       # [1, 1, 12, 12]
    wf, bf = fc.get_weights()                           # [4*4*12 (H, W, C order), 16]
    wl, bl = logits.get_weights()                       # [16, 4]
    # Keras flattens H, W, C; an NCHW model flattens C, H, W: reorder the rows of the Dense weights to match.
    nchw_rows = np.arange(4 * 4 * 12).reshape(4, 4, 12).transpose(2, 0, 1).reshape(-1)
    inits = {
        "conv_a.weight": f32(wa.transpose(3, 2, 0, 1)), "conv_a.bias": f32(ba),
        "bn.weight": f32(gamma), "bn.bias": f32(beta), "bn.running_mean": f32(mean), "bn.running_var": f32(var),
        "dw.weight": f32(wd.transpose(2, 3, 0, 1)), "dw.bias": f32(bd),
        "conv_b.weight": f32(wb.transpose(3, 2, 0, 1)), "conv_b.bias": f32(bb),
        "fc.weight": f32(wf[nchw_rows].T), "fc.bias": f32(bf),
        "logits.weight": f32(wl.T), "logits.bias": f32(bl),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_a.weight", "conv_a.bias"], ["a"], name="/conv_a/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["a", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                         ["a_bn"], name="/bn/BatchNormalization", epsilon=float(bn.epsilon)),
        helper.make_node("Relu", ["a_bn"], ["a_r"], name="/relu/Relu"),
        helper.make_node("Conv", ["a_r", "dw.weight", "dw.bias"], ["d"], name="/dw/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=12),
        helper.make_node("Relu", ["d"], ["d_r"], name="/relu_1/Relu"),
        helper.make_node("MaxPool", ["d_r"], ["p"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "conv_b.weight", "conv_b.bias"], ["b"], name="/conv_b/Conv",
                         kernel_shape=[1, 1]),
        helper.make_node("Relu", ["b"], ["b_r"], name="/relu_2/Relu"),
        helper.make_node("Flatten", ["b_r"], ["flat"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["h"], name="/fc/Gemm", transB=1),
        helper.make_node("Relu", ["h"], ["h_r"], name="/relu_3/Relu"),
        helper.make_node("Gemm", ["h_r", "logits.weight", "logits.bias"], ["y"], name="/logits/Gemm", transB=1),
    ]
    return _model(nodes, inits, ["batch", 1, 8, 8], ["batch", 4], opset, "small_cnn")


def op_zoo(opset, seed=0):
    """Random weights over the rest of the supported ops: a stride-2 convolution with PyTorch's symmetric padding
    (not TensorFlow's SAME: an explicit PAD), Clip(0, 6), a residual Add of two activations, a BatchNormalization
    that follows a ReLU (kept as multiply-add), AveragePool, a constant Mul, LeakyRelu, Reshape to a Constant (1, -1),
    MatMul + Add, Tanh, Sigmoid and Softmax; 2 input channels."""
    rng = np.random.default_rng(seed)
    r = lambda *shape, s=0.4: rng.normal(0, s, shape).astype(np.float32)   # noqa: E731
    inits = {"w1": r(8, 2, 3, 3), "b1": r(8, s=0.1), "w2": r(8, 8, 3, 3, s=0.2), "b2": r(8, s=0.1),
             "six": np.float32(6), "zero": np.float32(0),
             "g": rng.uniform(0.5, 1.5, 8).astype(np.float32), "be": r(8, s=0.1), "m": r(8, s=0.1),
             "v": rng.uniform(0.5, 1.5, 8).astype(np.float32), "scale": rng.uniform(0.5, 1.5, (1, 8, 1, 1))
             .astype(np.float32),
             "wm": r(8 * 2 * 2, 10, s=0.2), "bm": r(10, s=0.1), "wo": r(10, 5), "bo": r(5, s=0.1)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="down", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "zero", "six"], ["c1r"], name="relu6"),
        helper.make_node("Conv", ["c1r", "w2", "b2"], ["c2"], name="same", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["c2r"], name="relu"),
        helper.make_node("Add", ["c2r", "c1r"], ["res"], name="residual"),
        helper.make_node("BatchNormalization", ["res", "g", "be", "m", "v"], ["bn"], name="bn_after_add"),
        helper.make_node("AveragePool", ["bn"], ["ap"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["ap", "scale"], ["sc"], name="channel_scale"),
        helper.make_node("LeakyRelu", ["sc"], ["lr"], name="leaky", alpha=0.1),
        # torch.onnx.export writes the target shape of x.reshape(1, -1) as a Constant node
        helper.make_node("Constant", [], ["shape"], name="shape_const",
                         value=numpy_helper.from_array(np.array([1, -1], np.int64))),
        helper.make_node("Reshape", ["lr", "shape"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "wm"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "bm"], ["mmb"], name="fc_bias"),
        helper.make_node("Tanh", ["mmb"], ["t"], name="tanh"),
        helper.make_node("Gemm", ["t", "wo", "bo"], ["o"], name="out"),
        helper.make_node("Sigmoid", ["o"], ["s"], name="gate"),
        helper.make_node("Softmax", ["s"], ["y"], name="softmax", axis=-1),
    ]
    return _model(nodes, inits, [1, 2, 8, 8], [1, 5], opset, "op_zoo")


def branches(opset=17, seed=0):
    """torchvision-style normalization (Sub, Div by per-channel constants), an explicit Pad before a VALID Conv, two
    branches joined by Concat on the channel axis, ReduceMean over H and W (keepdims=0, as `x.mean((2, 3))`), Gemm;
    3 input channels."""
    rng = np.random.default_rng(seed)
    r = lambda *shape, s=0.4: rng.normal(0, s, shape).astype(np.float32)   # noqa: E731
    inits = {"mean": np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1),
             "std": np.array([0.2, 0.25, 0.3], np.float32).reshape(1, 3, 1, 1),
             "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "wa": r(6, 3, 3, 3), "ba": r(6, s=0.1), "wb": r(4, 3, 1, 1), "bb": r(4, s=0.1),
             "wo": r(3, 10), "bo": r(3, s=0.1)}
    if opset >= 18:
        inits["axes"] = np.array([2, 3], np.int64)
    reduce_inputs, reduce_attrs = (["cat", "axes"], {}) if opset >= 18 else (["cat"], {"axes": [2, 3]})
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["xc"], name="normalize_sub"),
        helper.make_node("Div", ["xc", "std"], ["xn"], name="normalize_div"),
        helper.make_node("Pad", ["xn", "pads"], ["xp"], name="pad", mode="constant"),
        helper.make_node("Conv", ["xp", "wa", "ba"], ["a"], name="branch_a", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["a"], ["ar"], name="relu_a"),
        helper.make_node("Conv", ["xn", "wb", "bb"], ["b"], name="branch_b", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["b"], ["br"], name="relu_b"),
        helper.make_node("Concat", ["ar", "br"], ["cat"], name="cat", axis=1),
        helper.make_node("ReduceMean", reduce_inputs, ["pooled"], name="mean", keepdims=0, **reduce_attrs),
        helper.make_node("Gemm", ["pooled", "wo", "bo"], ["y"], name="head", transB=1),
    ]
    return _model(nodes, inits, [1, 3, 6, 6], [1, 3], opset, "branches")


def dynamic_flatten(opset=17, seed=0):
    """`x.view(x.size(0), -1)` exported with a dynamic batch: Shape -> Gather -> Unsqueeze -> Concat -> Reshape
    (the shape arithmetic runs at translation), after a Conv on a 2-channel image."""
    rng = np.random.default_rng(seed)
    inits = {"w": rng.normal(0, 0.4, (4, 2, 3, 3)).astype(np.float32), "b": np.zeros(4, np.float32),
             "zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus_one": np.array([-1], np.int64),
             "wf": rng.normal(0, 0.2, (4 * 4 * 4, 3)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="/conv/Conv", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="/Relu"),
        helper.make_node("Shape", ["r"], ["s"], name="/Shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"], name="/Reshape"),
        helper.make_node("MatMul", ["flat", "wf"], ["y"], name="/fc/MatMul"),
    ]
    return _model(nodes, inits, ["N", 2, 6, 6], ["N", 3], opset, "dynamic_flatten")


def with_node(op_type, name, opset=17, **attributes):
    """A one-input model whose second node is `op_type` (an op the importer may not support)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="first"),
             helper.make_node(op_type, ["r"], ["y"], name=name, **attributes)]
    return _model(nodes, {}, [1, 6], [1, 6], opset, "one_op")
