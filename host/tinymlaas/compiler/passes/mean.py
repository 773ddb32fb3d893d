"""MEAN lowering (int8, TFLM's integer mean)."""

from ..errors import CompileError, op_where


def lower_mean(op, graph):
    raise CompileError("%s: MEAN is not supported yet" % op_where(op))
