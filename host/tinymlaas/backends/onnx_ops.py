"""The ONNX node -> TensorFlow op translation of onnx_import (one handler per ONNX op, `op_<OpType>`), with the
layout bookkeeping it needs: rank-4 values NHWC, and the column order of a Flatten of an NHWC image."""

import numpy as np

from .interface import BackendError

_ALIASES = ("Identity", "Dropout")


def where_is(node, k):
    return "%s (node %r, #%d)" % (node.op_type, node.name or node.output[0], k)


class _Value:
    """A value of the translated graph: a constant (numpy) or a TF tensor with its layout. `perm` (2-D only): the
    TF column j holds ONNX column perm[j] (after a Flatten of an NHWC tensor)."""

    def __init__(self, tensor=None, const=None, nhwc=False, perm=None):
        self.tensor, self.const, self.nhwc, self.perm = tensor, const, nhwc, perm


def attrs(node):
    import onnx
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _same_pads(in_size, k, s, d):
    """(before, after) padding of TensorFlow's SAME for one spatial axis."""
    out = -(-in_size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - in_size, 0)
    return total // 2, total - total // 2


def _padding(where, attrs, hw, kernel, strides, dil, allow_explicit):
    """"VALID", "SAME", or explicit [[t, b], [l, r]] (convolutions only) for ONNX pads / auto_pad."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        return "VALID"
    same = [_same_pads(hw[i], kernel[i], strides[i], dil[i]) for i in range(2)]
    if auto == "SAME_UPPER":
        return "SAME"
    if auto == "SAME_LOWER":
        pads = [same[0][1], same[1][1], same[0][0], same[1][0]]
    else:
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("ceil_mode", 0):
        # ceil_mode only matters when it changes the output size
        floor_out = [(hw[i] + pads[i] + pads[i + 2] - ((kernel[i] - 1) * dil[i] + 1)) // strides[i] + 1
                     for i in range(2)]
        ceil_out = [-(-(hw[i] + pads[i] + pads[i + 2] - ((kernel[i] - 1) * dil[i] + 1)) // strides[i]) + 1
                    for i in range(2)]
        if floor_out != ceil_out:
            raise BackendError("%s: ceil_mode=1 with these sizes is not supported" % where)
    if pads == [0, 0, 0, 0]:
        return "VALID"
    if [(pads[0], pads[2]), (pads[1], pads[3])] == same:
        return "SAME"
    if not allow_explicit:
        raise BackendError("%s: pads %s are neither none nor TensorFlow's SAME padding" % (where, pads))
    return [[pads[0], pads[2]], [pads[1], pads[3]]]


# Ops that only compute shapes (what torch.onnx.export writes for x.view(x.size(0), -1) with a dynamic batch): run at
# translation time on constants, never on activations.
SHAPE_OPS = ("Cast", "Gather", "Shape", "Slice", "Squeeze", "Unsqueeze")


class Translator:
    """Walks the ONNX nodes (topologically sorted, as the format requires) emitting TF ops; call inside a trace."""

    def __init__(self, model, folded, absorbed):
        """folded: {Conv node index: (weights, bias)} with a BatchNormalization folded in; absorbed: the indices
        of those BatchNormalization nodes (they become aliases of their input)."""
        from onnx import numpy_helper
        self.model = model
        self.values = {t.name: _Value(const=numpy_helper.to_array(t)) for t in model.graph.initializer}
        self.folded, self.absorbed = folded, absorbed
        self.opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        self.shapes = {}
        for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
            dims = vi.type.tensor_type.shape.dim
            self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]

    def run(self, x, input_name):
        import tensorflow as tf
        self.tf = tf
        self.values[input_name] = _Value(tensor=x, nhwc=len(x.shape) == 4)
        for k, node in enumerate(self.model.graph.node):
            where = where_is(node, k)
            if k in self.absorbed or node.op_type in _ALIASES:
                self.values[node.output[0]] = self.values[node.input[0]]
                continue
            if node.op_type == "Shape":
                self.values[node.output[0]] = self._shape(node, where, attrs(node))
                continue
            consts = [self.values.get(n) for n in node.input if n]
            if consts and node.op_type != "Constant" and all(v is not None and v.const is not None for v in consts):
                self._fold(node, where, [v.const for v in consts])
                continue
            if node.op_type in SHAPE_OPS:
                raise BackendError("%s: supported on constants and shapes only (a shape computation), not on "
                                   "activations" % where)
            handler = getattr(self, "op_" + node.op_type)
            self.values[node.output[0]] = handler(node, k, where, attrs(node))
        outs = []
        for o in self.model.graph.output:
            v = self.values[o.name]
            if v.const is not None:
                raise BackendError("ONNX output %r is a constant" % o.name)
            if v.perm is not None and not np.array_equal(v.perm, np.arange(len(v.perm))):
                raise BackendError("ONNX output %r is a Flatten of an image read in NCHW order; the blob holds it "
                                   "NHWC (end the model with a Gemm / MatMul, or flatten a 1x1 image)" % o.name)
            outs.append(v.tensor)
        return outs

    def _shape(self, node, where, a):
        """Shape of an activation: the ONNX (NCHW) shape with the batch of 1, as a constant."""
        shape = self.shapes.get(node.input[0])
        if shape is None:
            raise BackendError("%s: the shape of %r is not known" % (where, node.input[0]))
        dims = np.array([1] + list(shape[1:]), np.int64)
        return _Value(const=dims[a.get("start", 0):a.get("end", len(dims))])

    def _fold(self, node, where, values):
        """A node whose inputs are all constants, evaluated by onnx's reference evaluator now."""
        from onnx.reference import ReferenceEvaluator
        names = [n for n in node.input if n]
        try:
            outs = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, dict(zip(names, values)))
        except Exception as e:   # the evaluator raises whatever numpy raises for bad constants
            raise BackendError("%s: cannot evaluate on its constant inputs: %s" % (where, str(e)[:200])) from None
        for name, value in zip(node.output, outs):
            self.values[name] = _Value(const=np.asarray(value))

    def _in(self, node, i, where, const=False):
        if i >= len(node.input) or not node.input[i]:
            raise BackendError("%s: input %d is missing" % (where, i))
        v = self.values.get(node.input[i])
        if v is None:
            raise BackendError("%s: input %r is not computed before it" % (where, node.input[i]))
        if const and v.const is None:
            raise BackendError("%s: input %r must be a constant (an initializer)" % (where, node.input[i]))
        if not const and v.const is not None:
            raise BackendError("%s: data input %r is a constant; constant sub-graphs are not supported"
                               % (where, node.input[i]))
        return v

    def _image(self, v, where):
        if not v.nhwc:
            raise BackendError("%s: needs a 4-D (N, C, H, W) input, got rank %d" % (where, len(v.tensor.shape)))
        return v.tensor

    # -- convolutions and pooling -----------------------------------------------------------------------------

    def op_Conv(self, node, k, where, a):
        tf = self.tf
        x = self._image(self._in(node, 0, where), where)
        if k in self.folded:
            w, b = self.folded[k]
        else:
            w = self._in(node, 1, where, const=True).const.astype(np.float32)
            b = self._in(node, 2, where, const=True).const.astype(np.float32) if len(node.input) > 2 and \
                node.input[2] else None
        if w.ndim != 4:
            raise BackendError("%s: only 2-D convolutions are supported (weights of rank %d)" % (where, w.ndim))
        kernel, strides = list(w.shape[2:]), list(a.get("strides", [1, 1]))
        dil, group = list(a.get("dilations", [1, 1])), a.get("group", 1)
        pad = _padding(where, a, list(x.shape[1:3]), kernel, strides, dil, allow_explicit=True)
        if not isinstance(pad, str):
            x = tf.pad(x, [[0, 0]] + pad + [[0, 0]])
            pad = "VALID"
        channels = int(x.shape[3])
        if group == 1:
            y = tf.nn.conv2d(x, np.ascontiguousarray(w.transpose(2, 3, 1, 0)), [1] + strides + [1], pad,
                             dilations=dil)
        elif group == channels and w.shape[1] == 1:
            mult = w.shape[0] // channels
            f = np.ascontiguousarray(w.reshape(channels, mult, *kernel).transpose(2, 3, 0, 1))
            if strides[0] != strides[1]:
                raise BackendError("%s: depthwise convolution with unequal strides" % where)
            y = tf.nn.depthwise_conv2d(x, f, [1] + strides + [1], pad, dilations=dil)
        else:
            raise BackendError("%s: group=%d is not supported (1 or depthwise: group = input channels)"
                               % (where, group))
        if b is not None:
            y = tf.nn.bias_add(y, b)
        return _Value(tensor=y, nhwc=True)

    def _pool(self, node, where, a, fn):
        x = self._image(self._in(node, 0, where), where)
        kernel, strides = list(a["kernel_shape"]), list(a.get("strides", [1, 1]))
        if list(a.get("dilations", [1, 1])) != [1, 1]:
            raise BackendError("%s: dilated pooling is not supported" % where)
        pad = _padding(where, a, list(x.shape[1:3]), kernel, strides, [1, 1], allow_explicit=False)
        return _Value(tensor=fn(x, [1] + kernel + [1], [1] + strides + [1], pad), nhwc=True)

    def op_MaxPool(self, node, k, where, a):
        if len(node.output) > 1 and node.output[1]:
            raise BackendError("%s: the Indices output is not supported" % where)
        return self._pool(node, where, a, self.tf.nn.max_pool2d)

    def op_AveragePool(self, node, k, where, a):
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if a.get("count_include_pad", 0) and any(pads):
            raise BackendError("%s: count_include_pad=1 with padding is not supported" % where)
        return self._pool(node, where, a, self.tf.nn.avg_pool2d)

    def op_ReduceMean(self, node, k, where, a):
        """The mean over H and W (a global average pool), kept or not as dimensions."""
        x = self._image(self._in(node, 0, where), where)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self._in(node, 1, where, const=True).const.reshape(-1)
        if axes is None or sorted(int(d) % 4 for d in axes) != [2, 3]:
            raise BackendError("%s: only the mean over H and W (axes 2, 3) is supported, not %s" % (where, axes))
        keep = bool(a.get("keepdims", 1))
        return _Value(tensor=self.tf.reduce_mean(x, axis=[1, 2], keepdims=keep), nhwc=keep)

    def op_Pad(self, node, k, where, a):
        x = self._image(self._in(node, 0, where), where)
        mode = a.get("mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            raise BackendError("%s: only constant padding is supported" % where)
        pads = [int(p) for p in self._in(node, 1, where, const=True).const.reshape(-1)]
        if len(node.input) > 2 and node.input[2] and float(self._in(node, 2, where, const=True).const) != 0.0:
            raise BackendError("%s: only zero padding is supported" % where)
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            raise BackendError("%s: only non-negative padding of H and W is supported, not %s" % (where, pads))
        return _Value(tensor=self.tf.pad(x, [[0, 0], [pads[2], pads[6]], [pads[3], pads[7]], [0, 0]]), nhwc=True)

    def op_Concat(self, node, k, where, a):
        vs = [self._in(node, i, where) for i in range(len(node.input))]
        rank = len(vs[0].tensor.shape)
        axis = a.get("axis", 1) % rank
        if axis != 1 or any(v.nhwc != vs[0].nhwc or v.perm is not None for v in vs):
            raise BackendError("%s: only the channel / feature axis (1) of same-layout inputs is supported" % where)
        return _Value(tensor=self.tf.concat([v.tensor for v in vs], axis=3 if vs[0].nhwc else 1), nhwc=vs[0].nhwc)

    def op_GlobalAveragePool(self, node, k, where, a):
        x = self._image(self._in(node, 0, where), where)
        return _Value(tensor=self.tf.reduce_mean(x, axis=[1, 2], keepdims=True), nhwc=True)

    # -- dense ------------------------------------------------------------------------------------------------

    def _dense(self, v, w, b, where):
        """x @ w + b for a 2-D x (rows of w permuted when x is a flattened NHWC image)."""
        if len(v.tensor.shape) != 2:
            raise BackendError("%s: needs a 2-D input (Flatten first), got rank %d" % (where, len(v.tensor.shape)))
        if w.ndim != 2 or w.shape[0] != v.tensor.shape[1]:
            raise BackendError("%s: weights of shape %s for an input of %d features" % (where, list(w.shape),
                                                                                       v.tensor.shape[1]))
        if v.perm is not None:
            w = w[v.perm]
        y = self.tf.matmul(v.tensor, np.ascontiguousarray(w, dtype=np.float32))
        if b is not None:
            y = y + np.asarray(b, dtype=np.float32).reshape(-1)
        return _Value(tensor=y)

    def op_Gemm(self, node, k, where, a):
        x = self._in(node, 0, where)
        if a.get("transA", 0):
            raise BackendError("%s: transA=1 is not supported" % where)
        w = self._in(node, 1, where, const=True).const.astype(np.float64)
        w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        b = None
        if len(node.input) > 2 and node.input[2]:
            c = self._in(node, 2, where, const=True).const.astype(np.float64) * a.get("beta", 1.0)
            if c.size not in (1, w.shape[1]):
                raise BackendError("%s: bias C of shape %s is not a row vector" % (where, list(c.shape)))
            b = np.broadcast_to(c.reshape(-1), (w.shape[1],))
        return self._dense(x, w, b, where)

    def op_MatMul(self, node, k, where, a):
        return self._dense(self._in(node, 0, where), self._in(node, 1, where, const=True).const, None, where)

    # -- element-wise ---------------------------------------------------------------------------------------

    def _binary(self, node, where, fn):
        va, vb = (self.values.get(n) for n in node.input[:2])
        if va is None or vb is None:
            raise BackendError("%s: an input is not computed before it" % where)
        if va.const is not None and vb.const is not None:
            raise BackendError("%s: both inputs are constants" % where)
        if va.const is not None:
            va, vb = vb, va
        if vb.const is None:
            if va.nhwc != vb.nhwc or not _same_perm(va.perm, vb.perm):
                raise BackendError("%s: operands in different layouts" % where)
            return _Value(tensor=fn(va.tensor, vb.tensor), nhwc=va.nhwc, perm=va.perm)
        c = np.asarray(vb.const, dtype=np.float32)
        rank = len(va.tensor.shape)
        if va.nhwc and c.ndim >= 3:
            c = c.reshape((1,) * (4 - c.ndim) + c.shape).transpose(0, 2, 3, 1)
        elif va.nhwc and c.size > 1:
            raise BackendError("%s: constant of shape %s on an NCHW image" % (where, list(vb.const.shape)))
        elif va.perm is not None and c.size > 1:
            c = c.reshape(-1)[va.perm] if c.size == len(va.perm) else c
        if c.ndim > rank:
            raise BackendError("%s: constant of rank %d on a rank-%d input" % (where, c.ndim, rank))
        return _Value(tensor=fn(va.tensor, c), nhwc=va.nhwc, perm=va.perm)

    def op_Add(self, node, k, where, a):
        return self._binary(node, where, lambda p, q: p + q)

    def op_Mul(self, node, k, where, a):
        return self._binary(node, where, lambda p, q: p * q)

    def _constant_second(self, node, where):
        v = self.values.get(node.input[1]) if len(node.input) > 1 else None
        if v is None or v.const is None:
            raise BackendError("%s: only a constant second operand is supported" % where)

    def op_Sub(self, node, k, where, a):
        """x - c as x + (-c): the compiler has ADD (SUB of activations is not a blob op)."""
        self._constant_second(node, where)
        return self._binary(node, where, lambda p, q: p + (-q))

    def op_Div(self, node, k, where, a):
        """x / c as x * (1 / c): a MUL with a constant operand."""
        self._constant_second(node, where)
        if np.any(np.asarray(self.values[node.input[1]].const) == 0):
            raise BackendError("%s: division by a constant holding zero" % where)
        return self._binary(node, where, lambda p, q: p * (np.float32(1) / q))

    def op_BatchNormalization(self, node, k, where, a):
        """A BatchNormalization not folded into a convolution: a per-channel multiply and add."""
        v = self._in(node, 0, where)
        if a.get("training_mode", 0):
            raise BackendError("%s: training_mode=1 (export the model in eval mode)" % where)
        gamma, beta, mean, var = (self._in(node, i, where, const=True).const.astype(np.float64) for i in range(1, 5))
        if np.any(var + a.get("epsilon", 1e-5) <= 0):
            raise BackendError("%s: variance + epsilon is not positive" % where)
        scale = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
        shift = beta - mean * scale
        if v.perm is not None:
            scale, shift = scale[v.perm], shift[v.perm]
        return _Value(tensor=v.tensor * scale.astype(np.float32) + shift.astype(np.float32), nhwc=v.nhwc,
                      perm=v.perm)

    def _unary(self, node, where, fn):
        v = self._in(node, 0, where)
        return _Value(tensor=fn(v.tensor), nhwc=v.nhwc, perm=v.perm)

    def op_Relu(self, node, k, where, a):
        return self._unary(node, where, self.tf.nn.relu)

    def op_Sigmoid(self, node, k, where, a):
        return self._unary(node, where, self.tf.sigmoid)

    def op_Tanh(self, node, k, where, a):
        return self._unary(node, where, self.tf.tanh)

    def op_LeakyRelu(self, node, k, where, a):
        alpha = a.get("alpha", 0.01)
        return self._unary(node, where, lambda t: self.tf.nn.leaky_relu(t, alpha))

    def op_Clip(self, node, k, where, a):
        bounds = []
        for i in (1, 2):
            if len(node.input) > i and node.input[i]:
                bounds.append(float(self._in(node, i, where, const=True).const))
            else:
                bounds.append(None)
        if bounds == [0.0, 6.0]:
            return self._unary(node, where, self.tf.nn.relu6)
        if bounds[0] == 0.0 and bounds[1] is None:
            return self._unary(node, where, self.tf.nn.relu)
        raise BackendError("%s: only Clip(0, 6) (ReLU6) and Clip(0) (ReLU) are supported, not %s" % (where, bounds))

    def op_Softmax(self, node, k, where, a):
        v = self._in(node, 0, where)
        rank = len(v.tensor.shape)
        if a.get("axis", -1) not in (-1, rank - 1) or v.nhwc:
            raise BackendError("%s: softmax over the last axis of a 2-D tensor only" % where)
        return _Value(tensor=self.tf.nn.softmax(v.tensor), perm=v.perm)

    # -- shapes -------------------------------------------------------------------------------------------

    def _flatten(self, v):
        n, h, w, c = (int(d) for d in v.tensor.shape)
        perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)   # TF j <- ONNX perm[j]
        return _Value(tensor=self.tf.reshape(v.tensor, [n, h * w * c]), perm=perm)

    def op_Constant(self, node, k, where, a):
        from onnx import numpy_helper
        if "value" not in a:
            raise BackendError("%s: only a tensor 'value' is supported" % where)
        return _Value(const=numpy_helper.to_array(a["value"]))

    def op_Flatten(self, node, k, where, a):
        v = self._in(node, 0, where)
        if a.get("axis", 1) != 1:
            raise BackendError("%s: only axis=1 is supported" % where)
        if v.nhwc:
            return self._flatten(v)
        if len(v.tensor.shape) != 2:
            raise BackendError("%s: input of rank %d" % (where, len(v.tensor.shape)))
        return v

    def op_Reshape(self, node, k, where, a):
        v = self._in(node, 0, where)
        target = [int(d) for d in self._in(node, 1, where, const=True).const.reshape(-1)]
        shape = [int(d) for d in v.tensor.shape]
        onnx_shape = [shape[0], shape[3], shape[1], shape[2]] if v.nhwc else shape
        total = int(np.prod(shape))
        out = [onnx_shape[i] if d == 0 and i < len(onnx_shape) and not a.get("allowzero", 0) else d
               for i, d in enumerate(target)]
        if out.count(-1) == 1:
            known = int(np.prod([d for d in out if d != -1]))
            out[out.index(-1)] = total // known if known and total % known == 0 else -2
        if int(np.prod(out)) != total or min(out) < 1:
            raise BackendError("%s: cannot reshape %s to %s" % (where, onnx_shape, target))
        if len(out) == 2 and out[0] == 1 and (v.nhwc or len(shape) == 2):
            return self._flatten(v) if v.nhwc else v
        raise BackendError("%s: only reshapes to (batch, features) are supported, not %s" % (where, out))


def _same_perm(p, q):
    if p is None or q is None:
        return p is None and q is None
    return np.array_equal(p, q)
