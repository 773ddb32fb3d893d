"""A zoo of one-op (and a few multi-op) blobs covering every opcode and its shape/parameter variants."""

import random

from blobkit import (BlobBuilder, INT8, INT32, FLOAT32, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
                     AVERAGE_POOL_2D, MAX_POOL_2D, ADD, MUL, SOFTMAX, LUT, PAD, MEAN, CONCATENATION, QUANTIZE,
                     DEQUANTIZE, COPY, quant_multiplier)


def _i8(rng, n):
    return [rng.randint(-128, 127) for _ in range(n)]


def _requant_vectors(rng, b, co, per_channel, scale_lo=0.0005, scale_hi=0.02):
    ms, ss = [], []
    for _ in range(co if per_channel else 1):
        m, s = quant_multiplier(rng.uniform(scale_lo, scale_hi))
        ms.append(m)
        ss.append(s)
    mult = b.const_tensor(INT32, (len(ms),), ms)
    shift = b.const_tensor(INT32, (len(ss),), ss)
    return mult, shift


def conv(rng, H=7, W=6, C=3, Co=4, K=(3, 2), stride=(1, 2), dil=(1, 1), pad=(1, 0), depthwise=False, dm=1,
         per_channel=True, act=(-128, 127), scale=(0.0005, 0.02)):
    b = BlobBuilder()
    zin, zout = rng.randint(-128, 127), rng.randint(-128, 127)
    x = b.arena(INT8, (1, H, W, C), zp=zin)
    kh, kw = K
    ekh, ekw = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    OH = (H + pad[0] * 2 - ekh) // stride[0] + 1
    OW = (W + pad[1] * 2 - ekw) // stride[1] + 1
    if depthwise:
        Co = C * dm
        w = b.const_tensor(INT8, (1, kh, kw, Co), _i8(rng, kh * kw * Co))
    else:
        w = b.const_tensor(INT8, (Co, kh, kw, C), _i8(rng, Co * kh * kw * C))
    bias = b.const_tensor(INT32, (Co,), [rng.randint(-5000, 5000) for _ in range(Co)])
    mult, shift = _requant_vectors(rng, b, Co, per_channel, *scale)
    y = b.arena(INT8, (1, OH, OW, Co), zp=zout)
    params = [stride[0], stride[1], dil[0], dil[1], pad[0], pad[1], -zin, zout, act[0], act[1]]
    if depthwise:
        params.append(dm)
    b.op(DEPTHWISE_CONV_2D if depthwise else CONV_2D, [x, w, bias, mult, shift], y, params)
    b.graph([x], [y])
    return b


def fc(rng, rows=1, Ci=10, Co=5, per_channel=False, w_off=0):
    b = BlobBuilder()
    zin, zout = rng.randint(-128, 127), rng.randint(-128, 127)
    x = b.arena(INT8, (rows, Ci), zp=zin)
    w = b.const_tensor(INT8, (Co, Ci), _i8(rng, Co * Ci))
    bias = b.const_tensor(INT32, (Co,), [rng.randint(-5000, 5000) for _ in range(Co)])
    mult, shift = _requant_vectors(rng, b, Co, per_channel)
    y = b.arena(INT8, (rows, Co), zp=zout)
    b.op(FULLY_CONNECTED, [x, w, bias, mult, shift], y, [-zin, w_off, zout, -128, 127])
    b.graph([x], [y])
    return b


def pool(rng, code, H=7, W=5, C=3, f=(3, 2), s=(2, 2), pad=(1, 0), act=(-128, 127)):
    b = BlobBuilder()
    x = b.arena(INT8, (1, H, W, C))
    OH = (H + 2 * pad[0] - f[0]) // s[0] + 1
    OW = (W + 2 * pad[1] - f[1]) // s[1] + 1
    y = b.arena(INT8, (1, OH, OW, C))
    b.op(code, [x], y, [s[0], s[1], f[0], f[1], pad[0], pad[1], act[0], act[1]])
    b.graph([x], [y])
    return b


def add_mul(rng, code, a_shape=(1, 3, 4, 5), b_shape=(1, 3, 4, 5), y_shape=(1, 3, 4, 5)):
    b = BlobBuilder()
    za, zb, zy = (rng.randint(-128, 127) for _ in range(3))
    a = b.arena(INT8, a_shape, zp=za)
    bb = b.arena(INT8, b_shape, zp=zb)
    y = b.arena(INT8, y_shape, zp=zy)
    if code == ADD:
        am, ash = quant_multiplier(rng.uniform(0.3, 0.5))
        bm, bsh = quant_multiplier(rng.uniform(0.3, 0.5))
        om, osh = quant_multiplier(rng.uniform(0.5 / (1 << 20), 4.0 / (1 << 20)))
        params = [-za, am, ash, -zb, bm, bsh, 20, om, osh, zy, -128, 127]
    else:
        om, osh = quant_multiplier(rng.uniform(0.001, 0.02))
        params = [-za, -zb, om, osh, zy, -100, 120]
    b.op(code, [a, bb], y, params)
    b.graph([a, bb], [y])
    return b


def softmax(rng, rows=2, depth=10):
    import math
    b = BlobBuilder()
    x = b.arena(INT8, (rows, depth))
    # exp(-d * input_scale) in Q0.31 for d in 0..255, a plausible table (the runtime does not care how it was made)
    table = [min(0x7FFFFFFF, int(math.exp(-d * 0.08) * 2147483648.0)) if d < 200 else 0 for d in range(256)]
    t = b.const_tensor(INT32, (256,), table)
    y = b.arena(INT8, (rows, depth), zp=-128, scale=1 / 256)
    b.op(SOFTMAX, [x, t], y)
    b.graph([x], [y])
    return b


def lut(rng, shape=(1, 37), in_place=False):
    b = BlobBuilder()
    x = b.arena(INT8, shape)
    t = b.const_tensor(INT8, (256,), _i8(rng, 256))
    y = b.arena(INT8, shape, offset=b.tensors[x][3] if in_place else None)
    b.op(LUT, [x, t], y)
    b.graph([x], [y])
    return b


def pad(rng, shape=(1, 3, 4, 2), pads=(0, 0, 1, 2, 0, 1, 1, 0), value=-5):
    b = BlobBuilder()
    x = b.arena(INT8, shape)
    yshape = tuple(shape[k] + pads[2 * k] + pads[2 * k + 1] for k in range(4))
    y = b.arena(INT8, yshape)
    b.op(PAD, [x], y, list(pads) + [value])
    b.graph([x], [y])
    return b


def mean(rng, shape=(1, 4, 5, 6), mask=6):
    b = BlobBuilder()
    x = b.arena(INT8, shape)
    n = 1
    out = []
    for k in range(4):
        if mask & (1 << k):
            n *= shape[k]
        else:
            out.append(shape[k])
    y = b.arena(INT8, tuple(out) or (1,))
    m, s = quant_multiplier(rng.uniform(0.5, 1.5) / n)
    b.op(MEAN, [x], y, [mask, rng.randint(-20, 20), rng.randint(-20, 20), m, s])
    b.graph([x], [y])
    return b


def concat(rng, shapes=((1, 2, 3, 2), (1, 2, 3, 3), (1, 2, 3, 1)), axis=3):
    b = BlobBuilder()
    xs = [b.arena(INT8, s) for s in shapes]
    ys = list(shapes[0])
    ys[axis] = sum(s[axis] for s in shapes)
    y = b.arena(INT8, tuple(ys))
    b.op(CONCATENATION, xs, y, [axis])
    b.graph(xs, [y])
    return b


def quant_io(rng, n=13):
    """float32 -> QUANTIZE -> LUT -> DEQUANTIZE -> float32, plus a COPY of the int8 value as a second output."""
    b = BlobBuilder()
    x = b.arena(FLOAT32, (1, n))
    q = b.arena(INT8, (1, n), zp=3, scale=0.05)
    t = b.const_tensor(INT8, (256,), [max(-128, min(127, v - 128 + 7)) for v in range(256)])
    l = b.arena(INT8, (1, n), zp=3, scale=0.05)
    y = b.arena(FLOAT32, (1, n))
    c = b.arena(INT8, (1, n))
    b.op(QUANTIZE, [x], q)
    b.op(LUT, [q, t], l)
    b.op(DEQUANTIZE, [l], y)
    b.op(COPY, [l], c)
    b.graph([x], [y, c])
    return b


def small_net(rng):
    """conv -> depthwise -> avg pool -> fc -> softmax: the shape of the MLPerf KWS/VWW models, tiny."""
    b = BlobBuilder()
    x = b.arena(INT8, (1, 8, 6, 2), zp=-3)
    w1 = b.const_tensor(INT8, (4, 3, 3, 2), _i8(rng, 72))
    b1 = b.const_tensor(INT32, (4,), [rng.randint(-900, 900) for _ in range(4)])
    m1, s1 = _requant_vectors(rng, b, 4, True, 0.002, 0.01)
    h1 = b.arena(INT8, (1, 4, 3, 4), zp=-128)
    b.op(CONV_2D, [x, w1, b1, m1, s1], h1, [2, 2, 1, 1, 1, 1, 3, -128, -128, 127])
    w2 = b.const_tensor(INT8, (1, 3, 3, 4), _i8(rng, 36))
    b2 = b.const_tensor(INT32, (4,), [rng.randint(-900, 900) for _ in range(4)])
    m2, s2 = _requant_vectors(rng, b, 4, True, 0.002, 0.01)
    h2 = b.arena(INT8, (1, 4, 3, 4), zp=-128)
    b.op(DEPTHWISE_CONV_2D, [h1, w2, b2, m2, s2], h2, [1, 1, 1, 1, 1, 1, 128, -128, -128, 127, 1])
    h3 = b.arena(INT8, (1, 1, 1, 4), zp=-128)
    b.op(AVERAGE_POOL_2D, [h2], h3, [4, 3, 4, 3, 0, 0, -128, 127])
    w4 = b.const_tensor(INT8, (3, 4), _i8(rng, 12))
    b4 = b.const_tensor(INT32, (3,), [rng.randint(-900, 900) for _ in range(3)])
    m4, s4 = _requant_vectors(rng, b, 3, False, 0.01, 0.05)
    h4 = b.arena(INT8, (1, 3), zp=5)
    b.op(FULLY_CONNECTED, [h3, w4, b4, m4, s4], h4, [128, 0, 5, -128, 127])
    sm = softmax(rng, 1, 3)  # reuse its table construction
    tt = b.const_tensor(INT32, (256,), list(__import__("struct").unpack("<256i", bytes(sm.const[:1024]))))
    y = b.arena(INT8, (1, 3), zp=-128, scale=1 / 256)
    b.op(SOFTMAX, [h4, tt], y)
    b.graph([x], [y])
    b.meta = {"name": "small_net", "macs": 100}
    return b


def all_cases(seed=1):
    """[(name, BlobBuilder)] covering every opcode and the variants the runtime special-cases."""
    rng = random.Random(seed)
    return [
        ("conv_basic", conv(rng)),
        ("conv_1x1", conv(rng, H=5, W=5, C=16, Co=8, K=(1, 1), stride=(1, 1), pad=(0, 0))),
        ("conv_dilated_nonsquare", conv(rng, H=9, W=8, C=2, Co=3, K=(3, 2), stride=(2, 1), dil=(2, 3), pad=(2, 1))),
        ("conv_relu_range", conv(rng, act=(-20, 90))),
        ("conv_batch_blocks", conv(rng, H=12, W=12, C=3, Co=40, K=(3, 3), stride=(1, 1), pad=(1, 1))),
        ("conv_direct_big_filter", conv(rng, H=3, W=3, C=460, Co=3, K=(3, 3), stride=(1, 1), pad=(1, 1),
                                           scale=(0.00002, 0.0001))),
        ("conv_pointwise_many_pixels", conv(rng, H=40, W=30, C=5, Co=3, K=(1, 1), stride=(1, 1), pad=(0, 0))),
        ("dw_basic", conv(rng, C=5, K=(3, 3), stride=(1, 1), depthwise=True)),
        ("dw_mult2_stride", conv(rng, C=3, K=(3, 3), stride=(2, 2), pad=(1, 1), depthwise=True, dm=2)),
        ("dw_3x3_dilated_strided", conv(rng, H=11, W=10, C=6, K=(3, 3), stride=(2, 1), dil=(2, 2), pad=(2, 1),
                                        depthwise=True)),
        ("dw_dilated", conv(rng, H=9, W=9, C=4, K=(2, 3), stride=(1, 1), dil=(2, 2), pad=(1, 1), depthwise=True)),
        ("fc_row", fc(rng)),
        ("fc_rows_per_channel", fc(rng, rows=3, Ci=17, Co=6, per_channel=True)),
        ("fc_w_off", fc(rng, rows=2, Ci=8, Co=3, w_off=3)),
        ("fc_ci9_w_off", fc(rng, rows=2, Ci=9, Co=4, w_off=-2)),
        ("conv_pointwise_c8", conv(rng, H=6, W=7, C=8, Co=16, K=(1, 1), stride=(1, 1), pad=(0, 0))),
        ("avgpool", pool(rng, AVERAGE_POOL_2D)),
        ("avgpool_global", pool(rng, AVERAGE_POOL_2D, H=5, W=5, C=7, f=(5, 5), s=(1, 1), pad=(0, 0))),
        ("maxpool", pool(rng, MAX_POOL_2D, act=(-50, 100))),
        ("add_same", add_mul(rng, ADD)),
        ("add_broadcast", add_mul(rng, ADD, (1, 3, 1, 5), (1, 1, 4, 1), (1, 3, 4, 5))),
        ("mul_same", add_mul(rng, MUL)),
        ("mul_broadcast_scalar", add_mul(rng, MUL, (1, 3, 4, 5), (1,), (1, 3, 4, 5))),
        ("softmax", softmax(rng)),
        ("lut", lut(rng)),
        ("lut_in_place", lut(rng, in_place=True)),
        ("pad", pad(rng)),
        ("pad_rows", pad(rng, pads=(0, 0, 2, 1, 0, 0, 0, 0), value=7)),
        ("mean_hw", mean(rng)),
        ("mean_c", mean(rng, mask=8)),
        ("concat_c", concat(rng)),
        ("concat_h", concat(rng, ((1, 2, 3, 2), (1, 4, 3, 2)), axis=1)),
        ("quant_io", quant_io(rng)),
        ("small_net", small_net(rng)),
        # longer rows than the fused GEMM's row buffer (1,024 inputs): the FULLY_CONNECTED kernel over pixels
        ("fc_long_rows", fc(rng, rows=2, Ci=1100, Co=3, per_channel=True, w_off=1)),
        ("conv_pointwise_long_rows", conv(rng, H=2, W=1, C=1030, Co=2, K=(1, 1), stride=(1, 1), pad=(0, 0),
                                          scale=(0.00002, 0.0001))),
        # line filters (Kh x 1, 1 x Kw: the depthwise kernel's taps in its row buffer), streaming-WW shaped and
        # with padding, strides, dilation, a depth multiplier; 3, 5 and 15 taps (unrolled by 4 and the rest)
        ("dw_column_5x1", conv(rng, H=12, W=1, C=9, K=(5, 1), stride=(1, 1), pad=(0, 0), depthwise=True)),
        ("dw_column_15x1_padded", conv(rng, H=16, W=2, C=4, K=(15, 1), stride=(1, 1), pad=(3, 0), depthwise=True)),
        ("dw_row_1x3_dilated_strided_dm2", conv(rng, H=3, W=11, C=3, K=(1, 3), stride=(2, 2), dil=(1, 2),
                                                pad=(0, 2), depthwise=True, dm=2)),
        ("dw_column_4x1_dilated", conv(rng, H=13, W=3, C=5, K=(4, 1), stride=(2, 1), dil=(3, 1), pad=(2, 0),
                                       depthwise=True)),
    ]
