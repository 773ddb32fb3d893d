"""A learned head back into a plain int8 model (`tinymlaas learn pull --register NAME`, docs/learning.md).

The device's head computes float logits z = W x + b on the dequantized embedding x (the input of the model's
last FULLY_CONNECTED op). An ncm head's class means mu_k give the same order as -|x - mu_k|^2 with
W = 2 mu, b = -|mu|^2 (Head.linear). Both become that FC op again, in int8 as TFLite quantizes a Dense layer:

    weights  per-channel symmetric int8, scale_k = max|W_k| / 127
    bias     int32, scale in_scale * scale_k (TFLite's bias rule), corrected for the weights' rounding at the
             mean embedding
    output   int8 asymmetric over the range of the head's runner-up logit on the model's representative inputs
             (holding 0); logits outside it saturate without changing the argmax

so the new .tflite is the source's with only that op's weights, bias and output quantization changed; the ops
after it (a SOFTMAX) take any input scale. The service registers it as a new model (service/learning.py).
"""

import numpy as np

from ..compiler.frontend import parse_tflite
from ..compiler.tflite_schema import schema as S

# An ncm class with no samples has no mean: its bias is set this far below every other logit, so it never wins
# (the device's head leaves such classes out of its top class too).
EMPTY_CLASS_MARGIN = 1e3


class RegisterError(ValueError):
    """The head does not fit the model (dimensions, embedding quantization) or the model's last FC cannot take it."""


def last_fc(tflite):
    """(op index, input, weights, bias or -1, output) tensor indices of the last FULLY_CONNECTED op."""
    g = parse_tflite(tflite)
    fcs = [op for op in g.ops if op.kind == "FULLY_CONNECTED"]
    if not fcs:
        raise RegisterError("the model has no FULLY_CONNECTED op to replace")
    op = fcs[-1]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    return op.index, op.inputs[0], op.inputs[1], bias, op.outputs[0], g


def float_fc(tflite):
    """(W (K, D), b (K,)) float64 of the last FULLY_CONNECTED op dequantized: what a device's new softmax head
    starts from (tinyml/learn.py initial)."""
    _, x_t, w_t, b_t, _, g = last_fc(tflite)
    w = g.tensors[w_t]
    w_scale = np.asarray(w.scale, np.float64).reshape(-1, 1)
    weights = (w.data.astype(np.float64) - np.asarray(w.zero_point, np.float64).reshape(-1, 1)) * w_scale
    bias = np.zeros(len(weights))
    if b_t >= 0:
        bias = g.tensors[b_t].data.astype(np.float64) * g.tensors[x_t].s * w_scale.reshape(-1)
    return weights, bias


def linear_of(head):
    """(W, b) float64 of the head as one linear layer, centred over its classes: adding the same c(x) = w.x + v
    to every logit changes neither the argmax nor the softmax, and without that common part (an ncm head's
    |mu|^2-sized offsets, most of it) the int8 output's 255 steps go to what tells the classes apart. ncm
    classes without samples are set far below the others, so they never win."""
    w, b = head.linear()
    live = np.ones(len(b), bool)
    if head.kind == "ncm":
        live = np.asarray(head.extra) != 0
        if not live.any():
            raise RegisterError("the ncm head has learned no class yet (every count is 0)")
    w = w - w[live].mean(axis=0)
    b = b - b[live].mean()
    if not live.all():
        w[~live] = 0.0
        b[~live] = -EMPTY_CLASS_MARGIN - np.abs(b[live]).max() - np.abs(w[live]).sum(axis=1).max()
    return w, b


def output_range(head, embeddings):
    """(lo, hi) for the int8 logits: the range of the runner-up logit over dequantized `embeddings` (N, D),
    holding 0. Only where the top two classes meet decides the argmax: a logit below every runner-up may saturate
    at -128, and a top logit above every runner-up at 127 (still the only one there), so the 255 steps go to the
    runner-up's range. (A SOFTMAX after it then understates how sure the clearest answers are.)"""
    w, b = linear_of(head)
    z = np.asarray(embeddings, np.float64) @ w.T + b
    if head.kind == "ncm":          # empty classes sit far below: they must not stretch the range
        z = z[:, np.asarray(head.extra) != 0]
    z = np.sort(z, axis=1)
    second = z[:, -2] if z.shape[1] > 1 else z[:, -1]
    lo, hi = min(0.0, float(second.min())), max(0.0, float(second.max()))
    if hi - lo < 1e-6:
        hi = lo + 1e-6
    return lo, hi


def quantize_fc(head, in_scale, embeddings):
    """(int8 weights (K, D), weight scales (K,), int32 bias (K,), output scale, output zero point) for the head
    calibrated on dequantized `embeddings` (N, D). The bias takes back what rounding the weights costs at the
    embeddings' mean, (W - W_q) mean(x) (bias correction): only the rounding error's part that varies with x
    is left."""
    w, b = linear_of(head)
    lo, hi = output_range(head, embeddings)
    w_scale = np.abs(w).max(axis=1) / 127.0
    w_scale = np.where(w_scale > 0, w_scale, 1.0 / 127.0).astype(np.float32)
    q_w = np.clip(np.round(w / w_scale[:, None].astype(np.float64)), -127, 127).astype(np.int8)
    b = b + (w - q_w * w_scale[:, None].astype(np.float64)) @ np.asarray(embeddings, np.float64).mean(axis=0)
    b_scale = np.float64(np.float32(in_scale)) * w_scale.astype(np.float64)
    q_b = np.clip(np.round(b / b_scale), -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
    out_scale = np.float32((hi - lo) / 255.0)
    out_zp = int(np.clip(np.round(-128 - lo / float(out_scale)), -128, 127))
    return q_w, w_scale, q_b, float(out_scale), out_zp, (lo, hi)


def replace_head(tflite, head, embeddings):
    """The int8 .tflite `tflite` with its last FULLY_CONNECTED op computing `head` (learning.head.Head): its
    weights, bias and output quantization replaced; `embeddings` (N, D float, dequantized) set the output range.
    -> (new .tflite bytes, {"kind", "classes", "dim", "output_scale", "output_zero_point", "range"})."""
    import flatbuffers

    op_index, x_t, w_t, b_t, y_t, g = last_fc(tflite)
    x, w_old, y = g.tensors[x_t], g.tensors[w_t], g.tensors[y_t]
    if x.dtype != "int8" or y.dtype != "int8" or w_old.dtype != "int8":
        raise RegisterError("the model's last FULLY_CONNECTED is not int8 (input %s, weights %s, output %s)"
                            % (x.dtype, w_old.dtype, y.dtype))
    k, d = w_old.shape[0], w_old.shape[-1]
    if (head.classes, head.dim) != (k, d):
        raise RegisterError("the head is %d classes x %d inputs, the model's last FULLY_CONNECTED %d x %d"
                            % (head.classes, head.dim, k, d))
    if not np.isclose(np.float32(head.scale), np.float32(x.s), rtol=1e-6) or head.zero_point != x.zp:
        raise RegisterError("the head's embedding quantization (scale %g, zero point %d) is not the model's "
                            "(%g, %d): a head of another model" % (head.scale, head.zero_point, x.s, x.zp))
    embeddings = np.asarray(embeddings, np.float64).reshape(-1, d)
    q_w, w_scale, q_b, out_scale, out_zp, (lo, hi) = quantize_fc(head, x.s, embeddings)

    m = S.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    sg = m.subgraphs[0]
    fc = sg.operators[op_index]
    opts = fc.builtinOptions
    if opts is not None and getattr(opts, "fusedActivationFunction", 0) != 0:
        raise RegisterError("the model's last FULLY_CONNECTED has a fused activation; a head's logits have none")

    def new_buffer(array):
        buf = S.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8).copy()
        m.buffers.append(buf)
        return len(m.buffers) - 1

    def quant(scales, zero_points, dim=0):
        q = S.QuantizationParametersT()
        q.scale = np.asarray(scales, np.float32)
        q.zeroPoint = np.asarray(zero_points, np.int64)
        q.quantizedDimension = dim
        return q

    wt = sg.tensors[w_t]               # new buffers: the old ones may be shared with other tensors
    wt.buffer = new_buffer(q_w.reshape(w_old.shape))
    wt.quantization = quant(w_scale, np.zeros(k, np.int64))
    bias_scales = (np.float32(x.s) * w_scale).astype(np.float32)
    if b_t >= 0:
        bt = sg.tensors[b_t]
        if bt.type != S.TensorType.INT32:
            raise RegisterError("the model's last FULLY_CONNECTED has a %s bias, not int32"
                                % g.tensors[b_t].dtype)
        bt.buffer = new_buffer(q_b.astype("<i4"))
        bt.quantization = quant(bias_scales, np.zeros(k, np.int64))
    else:
        bt = S.TensorT()
        bt.shape = np.array([k], np.int32)
        bt.type = S.TensorType.INT32
        bt.name = b"learned_head_bias"
        bt.buffer = new_buffer(q_b.astype("<i4"))
        bt.quantization = quant(bias_scales, np.zeros(k, np.int64))
        sg.tensors.append(bt)
        ins = list(fc.inputs) + [-1] * (3 - len(fc.inputs))
        ins[2] = len(sg.tensors) - 1
        fc.inputs = np.array(ins, np.int32)
    sg.tensors[y_t].quantization = quant([out_scale], [out_zp])
    builder = flatbuffers.Builder(len(tflite) + 4 * k * d + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    info = {"kind": head.kind, "classes": int(k), "dim": int(d), "output_scale": out_scale,
            "output_zero_point": out_zp, "range": [lo, hi], "samples": int(head.samples)}
    return bytes(builder.Output()), info


def with_outputs(tflite, indices):
    """The same .tflite with tensors `indices` appended to its graph outputs: what lets TFLite Micro (which keeps
    no intermediate tensors) be the judge of an embedding or of the logits before a SOFTMAX."""
    import flatbuffers

    m = S.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    sg = m.subgraphs[0]
    sg.outputs = np.array(list(sg.outputs) + [int(i) for i in indices], np.int32)
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def dequantized(embedding_q, scale, zero_point):
    """Float embeddings as the device's head sees them: (q - zero point) * scale in float32."""
    q = np.asarray(embedding_q).astype(np.float64)
    return (np.float32(scale) * (q - zero_point)).astype(np.float32).astype(np.float64)
