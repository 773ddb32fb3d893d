"""Integer parameters exactly as TensorFlow Lite Micro computes them in its kernels' Prepare().

Everything here is a function of TFLite's float32 quantization parameters (held as Python floats that are exact
float32 values) and returns Python ints. Where TFLM computes in float32 we round through float32 (`f32`), where it
computes in double we use Python floats, because the last bit of a multiplier decides bit-exactness.

The runtime arithmetic (SRDHM, RDBPOT, MBQM, QuantizeMultiplier) comes from blob.fixedpoint. The gemmlowp
transcendental functions (exp on negative values, logistic, tanh) are only needed at compile time, to fill
SOFTMAX exp tables and LUT tables, so they live here.
"""

import math

import numpy as np

from ..blob.fixedpoint import INT32_MAX, INT32_MIN, half_sum, mbqm, quantize_multiplier, rdbpot, sat_shl, srdhm, \
    wrap32
from .errors import CompileError

INT8_MIN, INT8_MAX = -128, 127


def f32(x):
    """Round a Python float to the nearest float32 value (what a C `float` expression yields)."""
    return float(np.float32(x))


def round_away(x):
    """C's round()/TfLiteRound: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier_checked(real, what):
    """QuantizeMultiplier with the blob's MBQM domain enforced: m in [2^30, 2^31) or 0, shift in [-31, 30]."""
    m, s = quantize_multiplier(real)
    if s > 30:
        raise CompileError("%s: multiplier %g is too large for TFLite's fixed-point requantization" % (what, real))
    return m, s


# -- activation ranges ------------------------------------------------------------------------------------------

def _quantize_f32(scale, zero_point, f):
    """kernel_util.cc Quantize(): zero_point + round(f / scale) in float32."""
    return zero_point + round_away(f32(f32(f) / f32(scale)))


def activation_range(activation, scale, zero_point, qmin=INT8_MIN, qmax=INT8_MAX):
    """CalculateActivationRangeQuantized for a fused activation name (NONE, RELU, RELU6, RELU_N1_TO_1)."""
    if activation in (None, "NONE"):
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, _quantize_f32(scale, zero_point, 0.0)), qmax
    if activation == "RELU6":
        return max(qmin, _quantize_f32(scale, zero_point, 0.0)), min(qmax, _quantize_f32(scale, zero_point, 6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, _quantize_f32(scale, zero_point, -1.0)), min(qmax, _quantize_f32(scale, zero_point, 1.0))
    raise CompileError("fused activation %s is not supported" % activation)


# -- convolution / fully connected --------------------------------------------------------------------------------

def conv_multipliers(input_scale, filter_scales, output_scale, channels):
    """PopulateConvolutionQuantizationParams (also per-channel FULLY_CONNECTED): per output channel
    double(in) * double(filter[c]) / double(out), per-tensor scales broadcast over `channels`."""
    mults, shifts = [], []
    for c in range(channels):
        fs = filter_scales[c] if len(filter_scales) > 1 else filter_scales[0]
        m, s = quantize_multiplier_checked(input_scale * fs / output_scale, "convolution requantization")
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def fully_connected_multiplier(input_scale, filter_scale, output_scale):
    """GetQuantizedConvolutionMultipler (per-tensor FULLY_CONNECTED): the scale product is taken in float32."""
    return quantize_multiplier_checked(f32(input_scale * filter_scale) / output_scale,
                                       "fully connected requantization")


# -- ADD / MUL ----------------------------------------------------------------------------------------------------

ADD_LEFT_SHIFT = 20  # TFLM's left_shift for int8 ADD


def add_params(s1, s2, s_out):
    """CalculateOpDataAdd (int8): (a_mult, a_shift, b_mult, b_shift, out_mult, out_shift)."""
    twice_max = 2 * max(s1, s2)
    r1 = s1 / twice_max
    r2 = s2 / twice_max
    r_out = twice_max / ((1 << ADD_LEFT_SHIFT) * s_out)
    out = []
    for r in (r1, r2, r_out):
        if not 0.0 < r < 1.0:
            raise CompileError("ADD: rescale factor %g outside (0, 1) (scales %g, %g -> %g)" % (r, s1, s2, s_out))
        m, s = quantize_multiplier(r)
        out += [m, s]
    return tuple(out)


def mul_params(s1, s2, s_out):
    """MUL (int8, mul_common.cc): QuantizeMultiplier(double(in1) * double(in2) / double(out))."""
    return quantize_multiplier_checked(s1 * s2 / s_out, "MUL requantization")


# -- gemmlowp fixed-point transcendental functions (raw int32 values) ----------------------------------------------

def _rescale(raw, src_bits, dst_bits):
    """gemmlowp Rescale<dst>: SaturatingRoundingMultiplyByPOT<src - dst>."""
    e = src_bits - dst_bits
    if e > 0:
        return sat_shl(raw, e)
    if e < 0:
        return rdbpot(raw, -e)
    return raw


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor expansion around -1/8."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = wrap32(a + (1 << 28))  # a + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(wrap32(srdhm(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
               (4, 242))


def exp_on_negative_values(a, integer_bits):
    """gemmlowp exp_on_negative_values: a is a Q(integer_bits).(31-integer_bits) raw value <= 0, result Q0.31."""
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = wrap32((a & mask) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            if remainder & (1 << (frac_bits + exponent)):
                result = srdhm(result, multiplier)
    if integer_bits > 5 and a < -(1 << (36 - integer_bits)):  # below -32.0: exp underflows to 0
        result = 0
    if a == 0:
        result = INT32_MAX
    return result


def one_over_one_plus_x_for_x_in_0_1(a):
    """1 / (1 + a), Q0.31 raw in and out (Newton-Raphson, three iterations)."""
    half_den = half_sum(a, INT32_MAX)
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))  # 48/17 - 32/17 * half_den, Q2.29
    for _ in range(3):
        t = srdhm(half_den, x)
        x = wrap32(x + sat_shl(srdhm(x, wrap32((1 << 29) - t)), 2))
    return sat_shl(x, 1)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    """(1 - a) / (1 + a), Q0.31 raw in and out."""
    half_den = half_sum(a, INT32_MAX)
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        t = srdhm(half_den, x)
        x = wrap32(x + sat_shl(srdhm(x, wrap32((1 << 29) - t)), 2))
    return sat_shl(wrap32(x - (1 << 29)), 2)  # Rescale<0> of a Q2.29 value


def gemmlowp_logistic(a, integer_bits):
    """gemmlowp logistic of a Q(integer_bits) raw value, result Q0.31 raw."""
    if a == 0:
        return 1 << 30
    abs_a = a if a > 0 else wrap32(-a)
    pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(wrap32(-abs_a), integer_bits))
    return pos if a > 0 else wrap32(INT32_MAX - pos)


def gemmlowp_tanh(a, integer_bits):
    """gemmlowp tanh of a Q(integer_bits) raw value, result Q0.31 raw."""
    if a == 0:
        return 0
    n = a if a < 0 else wrap32(-a)
    # gemmlowp ExactMulByPot<1> doubles the value by re-reading the same raw bits with one more integer bit.
    t = exp_on_negative_values(n, integer_bits + 1)
    y = one_minus_x_over_one_plus_x_for_x_in_0_1(t)
    return wrap32(-y) if a < 0 else y


# -- SOFTMAX ------------------------------------------------------------------------------------------------------

SOFTMAX_SCALED_DIFF_INTEGER_BITS = 5


def calculate_input_radius(input_integer_bits, input_left_shift, total_signed_bits=31):
    """CalculateInputRadius (double arithmetic, then floor)."""
    v = 1.0 * ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits)) / \
        (1 << input_left_shift)
    return int(math.floor(v))


def softmax_exp_table(beta, input_scale):
    """The blob's SOFTMAX exp_table[256]: exp_table[d] = TFLM's Q0.31 exp of input difference -d, 0 below diff_min.

    PreprocessSoftmaxScaling(beta, input_scale, 5) in double, then for each difference the kernel's
    MultiplyByQuantizedMultiplierGreaterThanOne and gemmlowp exp_on_negative_values<5>."""
    real = min(beta * input_scale * (1 << (31 - SOFTMAX_SCALED_DIFF_INTEGER_BITS)), (1 << 31) - 1.0)
    if not real > 1.0:
        raise CompileError("SOFTMAX: beta * input scale %g is too small for TFLite's int8 softmax" % (beta *
                                                                                                     input_scale))
    mult, left_shift = quantize_multiplier(real)
    diff_min = -calculate_input_radius(SOFTMAX_SCALED_DIFF_INTEGER_BITS, left_shift)
    table = []
    for d in range(256):
        diff = -d
        if diff >= diff_min:
            rescaled = srdhm(wrap32(diff * (1 << left_shift)), mult)
            table.append(exp_on_negative_values(rescaled, SOFTMAX_SCALED_DIFF_INTEGER_BITS))
        else:
            table.append(0)
    return table


# -- LUT tables for int8 -> int8 elementwise ops -------------------------------------------------------------------

def _in_range():
    return range(INT8_MIN, INT8_MAX + 1)


def _clamp8(v):
    return max(INT8_MIN, min(INT8_MAX, v))


def relu_table(in_scale, in_zp, out_scale, out_zp, act_min=0.0, act_max=math.inf):
    """TFLM ReluQuantized (CalculateReluOpData): requantize by float32(in/out), clamp to the quantized range."""
    m, s = quantize_multiplier(f32(in_scale / out_scale))
    qmin = max(INT8_MIN, out_zp + round_away(f32(f32(act_min) / f32(out_scale))))
    qmax = INT8_MAX if act_max == math.inf else min(INT8_MAX, out_zp + round_away(f32(f32(act_max) /
                                                                                      f32(out_scale))))
    return [max(qmin, min(qmax, out_zp + mbqm(x - in_zp, m, s))) for x in _in_range()]


def relu6_table(in_scale, in_zp):
    """TFLM Relu6Quantized: clamp to [input zero point, quantized 6.0 of the input] (output params unused)."""
    six = _clamp8(round_away(f32(6.0 / f32(in_scale))) + in_zp)  # FloatToQuantizedType: round(float / float)
    return [six if x > six else in_zp if x < in_zp else x for x in _in_range()]


def relu_n1_to_1_table(in_scale, in_zp, out_scale, out_zp):
    """RELU_N1_TO_1 as TFLite computes it for int8: ReluQuantized with the range [-1, 1]."""
    return relu_table(in_scale, in_zp, out_scale, out_zp, -1.0, 1.0)


def _frexp_multiplier(real):
    q, shift = math.frexp(real)
    m = round_away(q * (1 << 31))
    if m == (1 << 31):
        raise CompileError("input scale %g rounds to an unrepresentable multiplier" % real)
    return m, shift


def _q4_27_table(in_scale, in_zp, inside):
    """The shape TFLM's int8 LOGISTIC and TANH share: inputs beyond the radius saturate, the others are rescaled
    to Q4.27 and mapped by `inside(q4)`."""
    m, shift = _frexp_multiplier(in_scale * (1 << (31 - 4)))
    radius = calculate_input_radius(4, shift)
    out = []
    for x in _in_range():
        v = x - in_zp
        if v <= -radius:
            out.append(INT8_MIN)
        elif v >= radius:
            out.append(INT8_MAX)
        else:
            out.append(_clamp8(inside(mbqm(v, m, shift))))
    return out


def logistic_table(in_scale, in_zp):
    """TFLM int8 LOGISTIC (reference_integer_ops::Logistic): input to Q4.27, gemmlowp logistic, Q0.31 -> Q0.8 - 128."""
    return _q4_27_table(in_scale, in_zp, lambda q4: rdbpot(gemmlowp_logistic(q4, 4), 31 - 8) - 128)


def tanh_table(in_scale, in_zp):
    """TFLM int8 TANH (reference_integer_ops::Tanh): input to Q4.27, gemmlowp tanh, Q0.31 -> Q0.7."""
    return _q4_27_table(in_scale, in_zp, lambda q4: rdbpot(gemmlowp_tanh(q4, 4), 31 - 7))


def requantize_table(in_scale, in_zp, out_scale, out_zp):
    """TFLM int8 -> int8 QUANTIZE (requantize): MBQM by double(in/out) then add the output zero point."""
    m, s = quantize_multiplier_checked(in_scale / out_scale, "QUANTIZE requantization")
    return [_clamp8(mbqm(x - in_zp, m, s) + out_zp) for x in _in_range()]


def leaky_relu_table(in_scale, in_zp, out_scale, out_zp, alpha):
    """TFLM int8 LEAKY_RELU: identity multiplier float32(in/out), alpha multiplier float32(in*alpha/out); a
    negative alpha multiplies by |alpha| and negates (reference QuantizeLeakyRelu)."""
    m_id, s_id = quantize_multiplier_checked(f32(f32(in_scale) / f32(out_scale)), "LEAKY_RELU")
    m_a, s_a = quantize_multiplier(f32(f32(f32(in_scale) * f32(alpha)) / f32(out_scale)))
    if s_a > 30:
        raise CompileError("LEAKY_RELU: alpha multiplier too large")
    neg = m_a < 0
    m_a = abs(m_a)
    out = []
    for x in _in_range():
        v = x - in_zp
        if v >= 0:
            out.append(_clamp8(out_zp + mbqm(v, m_id, s_id)))
        else:
            a = mbqm(v, m_a, s_a)
            out.append(_clamp8(out_zp + (-a if neg else a)))
    return out


def _int16(v):
    return ((v + (1 << 15)) & 0xFFFF) - (1 << 15)


def _srdhm16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int16."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else 1 - (1 << 14)
    q = abs(ab + nudge) // (1 << 15)
    return _int16(q if ab + nudge >= 0 else -q)


def _sdhm16(a, b):
    """hard_swish.h SaturatingDoublingHighMul (int16, truncating, no rounding nudge)."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    q = abs(ab) // (1 << 15)
    return _int16(q if ab >= 0 else -q)


def _sat_shl16(v, amount):
    return max(-(1 << 15), min((1 << 15) - 1, v * (1 << amount)))


def _downscale_to_int16(m):
    """DownScaleInt32ToInt16Multiplier: round a Q0.31 multiplier to Q0.15."""
    if m >= INT32_MAX - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16


def hard_swish_table(in_scale, in_zp, out_scale, out_zp):
    """TFLM int8 HARD_SWISH (reference_ops::HardSwish with HardSwishPrepare's int16 multipliers)."""
    hires_input_scale = f32(f32(1.0 / 128.0) * f32(in_scale))
    reluish_scale = f32(3.0 / 32768.0)
    om, oe = quantize_multiplier(f32(hires_input_scale / f32(out_scale)))
    if oe > 0:
        raise CompileError("HARD_SWISH: output scale too small for TFLite's int8 kernel")
    rm, re = quantize_multiplier(f32(hires_input_scale / reluish_scale))
    om16, rm16 = _downscale_to_int16(om), _downscale_to_int16(rm)
    out = []
    for x in _in_range():
        v = _int16(x - in_zp)
        hires = _int16(v * (1 << 7))
        preshift_out = _srdhm16(hires, om16)
        reluish = hires
        if re > 0:
            reluish = _sat_shl16(reluish, re - 1)
        reluish = _srdhm16(reluish, rm16)
        if re > 0:
            reluish = _sat_shl16(reluish, 1)
        if re < 0:
            reluish = rdbpot(reluish, -re)
        reluish = (reluish + (1 << 15)) >> 1
        pre = _sdhm16(reluish, preshift_out)
        o = _int16(rdbpot(pre, -oe) + out_zp)
        out.append(_clamp8(o))
    return out


# -- MEAN ---------------------------------------------------------------------------------------------------------

def mean_params(in_scale, out_scale, count):
    """TFLM int8 MEAN (QuantizedMeanOrSum): QuantizeMultiplier(double(in)/double(out)), then 1/count folded in by
    (mult << s) / count with s = floor(log2(count)) clamped to min(32, 31 + shift)."""
    m, s = quantize_multiplier(in_scale / out_scale)
    k = count.bit_length() - 1
    k = min(k, 32, 31 + s)
    m = (m << k) // count
    s = s - k
    if not -31 <= s <= 30:
        raise CompileError("MEAN: requantization shift %d out of range" % s)
    return m, s
