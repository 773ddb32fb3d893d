"""Compile-time errors: everything the compiler cannot turn into an exact blob is refused here, never on a device."""


class CompileError(ValueError):
    """The model uses something the blob format or the compiler does not support (message names op and position)."""


def op_where(op):
    """'CONV_2D (op 3)': how errors name an op, by TFLite builtin name and its position in the source model (also
    after a pass renamed it, e.g. RESHAPE -> VIEW or RELU -> LUT)."""
    return "%s (op %d)" % (op.options.get("source_kind", op.kind), op.index)
