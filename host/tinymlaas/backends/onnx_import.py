"""Float ONNX (what torch.onnx.export writes) -> a TensorFlow function with the same arithmetic, for int8 PTQ.

The int8 back-end then quantizes that function with TensorFlow's converter, exactly as it does a Keras model, and
compiles the int8 .tflite; TFLite Micro running that .tflite stays the judge of the blob (docs/backends.md, "ONNX").

Layout: ONNX images are NCHW, TFLite's are NHWC and the compiler has no TRANSPOSE. Rank-4 activations are held
NHWC: convolution and pooling weights are transposed once, and a Flatten / Reshape of an NHWC tensor to [N, C*H*W]
reads it in H, W, C order, so the permutation is applied to the rows of the Gemm / MatMul weights that consume it
(exact: the same products, summed in another order only inside TFLite's int32 accumulator). The blob's input is
therefore NHWC; `input_transpose` says how to turn an NCHW sample into it.

Every node is checked before TensorFlow is imported: an op outside SUPPORTED_OPS, another domain, an opset outside
13-21 or an attribute the translation cannot honour raises BackendError naming the op and the node.
"""

import numpy as np

from .interface import BackendError
from .onnx_ops import SHAPE_OPS, Translator, attrs, where_is

OPSETS = range(13, 22)
SUPPORTED_OPS = ("Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "Div", "Dropout",
                 "Flatten", "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu", "MatMul", "MaxPool", "Mul", "Pad",
                 "ReduceMean", "Relu", "Reshape", "Sigmoid", "Softmax", "Sub", "Tanh") + SHAPE_OPS


def load(data):
    """onnx.ModelProto from bytes, checked (structure, opset, ops) and with inferred shapes."""
    try:
        import onnx
    except ImportError:
        raise BackendError("ONNX models need the onnx package (pip install 'tinymlaas[onnx]')") from None
    try:
        model = onnx.load_from_string(bytes(data))
        onnx.checker.check_model(model)
    except Exception as e:  # DecodeError, ValidationError, ...
        raise BackendError("not a valid ONNX model: %s" % (str(e).strip().splitlines() or [type(e).__name__])[0]
                           [:300]) from None
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    version = opsets.get("ai.onnx")
    if version not in OPSETS:
        raise BackendError("ONNX opset %s is not supported (opsets 13-21 are)" % version)
    for k, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            raise BackendError("ONNX op %s.%s (node %r) is not supported: only the default domain"
                               % (node.domain, node.op_type, node.name))
        if node.op_type not in SUPPORTED_OPS:
            raise BackendError("ONNX op %s is not supported (supported: %s)"
                               % (where_is(node, k), ", ".join(SUPPORTED_OPS)))
    from onnx import numpy_helper
    for t in model.graph.initializer:
        try:
            value = numpy_helper.to_array(t)
        except Exception as e:   # a raw_data size that does not match the dims, an unknown data type, ...
            raise BackendError("ONNX initializer %r cannot be read: %s" % (t.name, str(e)[:200])) from None
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise BackendError("ONNX initializer %r holds NaN or infinite values" % t.name)
    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(graph_inputs) != 1:
        raise BackendError("the ONNX model has %d inputs; one is supported" % len(graph_inputs))
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:
        raise BackendError("ONNX shape inference failed: %s" % str(e).strip()[:300]) from None
    return model


def input_shape(model):
    """The graph input's shape with the batch set to 1; every other dimension must be fixed."""
    inp = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}][0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if not dims or any(d is None or d < 1 for d in dims[1:]):
        raise BackendError("ONNX input %r has shape %s: only the batch dimension may be dynamic"
                           % (inp.name, ["?" if d is None else d for d in dims]))
    return inp.name, [1] + [int(d) for d in dims[1:]]


def fold_batchnorm(model):
    """{node index: folded weights} for Conv / Gemm nodes followed only by a BatchNormalization, and the set of
    BatchNormalization nodes so folded (they become aliases of their input)."""
    from onnx import numpy_helper
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = list(model.graph.node)
    users = {}
    for n in nodes:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    outputs = {o.name for o in model.graph.output}
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    folded, absorbed = {}, set()
    for k, bn in enumerate(nodes):
        if bn.op_type != "BatchNormalization" or len(bn.input) < 5 or not all(i in consts for i in bn.input[1:5]):
            continue
        p = producer.get(bn.input[0])
        if p is None or users.get(bn.input[0]) != 1 or bn.input[0] in outputs:
            continue
        conv = nodes[p]
        if conv.op_type != "Conv" or conv.input[1] not in consts or (len(conv.input) > 2 and
                                                                    conv.input[2] not in consts):
            continue
        if attrs(bn).get("training_mode", 0):
            continue                                       # refused by the translator, naming the node
        eps = attrs(bn).get("epsilon", 1e-5)
        gamma, beta, mean, var = (consts[i].astype(np.float64) for i in bn.input[1:5])
        if np.any(var + eps <= 0):
            continue                                       # refused by the translator, naming the node
        scale = gamma / np.sqrt(var + eps)
        w = consts[conv.input[1]].astype(np.float64)
        b = consts[conv.input[2]].astype(np.float64) if len(conv.input) > 2 and conv.input[2] else \
            np.zeros(w.shape[0])
        folded[p] = ((w * scale.reshape(-1, 1, 1, 1)).astype(np.float32),
                     ((b - mean) * scale + beta).astype(np.float32))
        absorbed.add(k)
    return folded, absorbed


def to_tf(model):
    """(concrete function taking one NHWC or 2-D float32 batch of 1, the module holding it, NHWC input shape,
    input transpose or None). The function's outputs are the ONNX graph's outputs."""
    import tensorflow as tf
    name, shape = input_shape(model)
    transpose = [0, 2, 3, 1] if len(shape) == 4 else None
    if len(shape) not in (2, 4):
        raise BackendError("ONNX input %r has rank %d; rank 2 (features) or 4 (images) is supported"
                           % (name, len(shape)))
    tf_shape = [shape[i] for i in transpose] if transpose else shape

    module = tf.Module()
    translator = Translator(model, *fold_batchnorm(model))

    @tf.function(input_signature=[tf.TensorSpec(tf_shape, tf.float32)], autograph=False)
    def forward(x):
        outs = translator.run(x, name)
        return outs[0] if len(outs) == 1 else outs

    module.forward = forward
    return forward.get_concrete_function(), module, tf_shape, transpose


def reference_outputs(model, rows):
    """The ONNX model's own float outputs (onnx's reference evaluator) for NCHW / 2-D rows, batch 1 each."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class BatchNormalization(OpRun):
        """Inference-mode batch normalization, as the spec defines it: onnx 1.23's evaluator uses the batch's
        statistics for BatchNormalization-9 (momentum filled in) and -14 (training_mode left unset)."""
        op_domain = ""

        def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None, training_mode=None):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            eps = 1e-5 if epsilon is None else epsilon
            s = scale.reshape(shape) / np.sqrt(var.reshape(shape) + eps)
            return ((x - mean.reshape(shape)) * s + bias.reshape(shape)).astype(x.dtype),

    name, shape = input_shape(model)
    ev = ReferenceEvaluator(model, new_ops=[BatchNormalization])
    return [ev.run(None, {name: np.asarray(r, np.float32).reshape(shape)})[0] for r in rows]
