"""Format constants of the model blob, version 1: the one Python statement of docs/blob-format.md.

The writer (blob/writer.py) and the reader (blob/reader.py) both import these names, so the two can only disagree
with the spec, never with each other. Section numbers below refer to docs/blob-format.md.
"""

import struct


class BlobFormatError(ValueError):
    """The bytes are not a valid format-version-1 blob; the message says which rule failed."""


def fail(msg, *args):
    raise BlobFormatError(msg % args if args else msg)

# §1 Header ------------------------------------------------------------------------------------------------------
MAGIC = b"TMLB"
FORMAT_VERSION = 1
ABI = 1
HEADER_BYTES = 64
FLAG_FLOAT_IO = 1 << 0
MAX_SECTIONS = 16
# magic, format_version, header_bytes, flags, abi, section_count, total_bytes, arena_bytes, sha256,
# max_op_params, reserved
HEADER = struct.Struct("<4sHHIHHII32sII")
SHA256_OFFSET = 24
assert HEADER.size == HEADER_BYTES

# §2 Section table -----------------------------------------------------------------------------------------------
SECTION = struct.Struct("<IIII")  # kind, offset, size, count
SECTION_TENSORS = 1
SECTION_OPS = 2
SECTION_CONST = 3
SECTION_GRAPH = 4
SECTION_META = 5
REQUIRED_SECTIONS = (SECTION_TENSORS, SECTION_OPS, SECTION_CONST, SECTION_GRAPH)
KNOWN_SECTIONS = REQUIRED_SECTIONS + (SECTION_META,)
FIRST_OPTIONAL_SECTION_KIND = 0x100  # kinds >= this may be skipped by a reader that does not know them
CONST_ALIGN = 16  # the CONST section's file offset and every const tensor's offset inside it

# §3 TENSORS -----------------------------------------------------------------------------------------------------
DTYPE_INT8 = 1
DTYPE_UINT8 = 2
DTYPE_INT16 = 3
DTYPE_INT32 = 4
DTYPE_FLOAT32 = 5
DTYPE_SIZE = {DTYPE_INT8: 1, DTYPE_UINT8: 1, DTYPE_INT16: 2, DTYPE_INT32: 4, DTYPE_FLOAT32: 4}
DTYPE_NAMES = {DTYPE_INT8: "int8", DTYPE_UINT8: "uint8", DTYPE_INT16: "int16", DTYPE_INT32: "int32",
               DTYPE_FLOAT32: "float32"}
DTYPE_BY_NAME = {v: k for k, v in DTYPE_NAMES.items()}
MAX_RANK = 4
STORAGE_ARENA = 0
STORAGE_CONST = 1
# dtype, rank, storage, reserved, dims[4], offset, bytes, zero_point, scale
TENSOR = struct.Struct("<BBBB4IIIif")
assert TENSOR.size == 36
MAX_TENSOR_BYTES = 1 << 31

# §4 GRAPH: u16 n_inputs, u16 n_outputs, then u16 indices -------------------------------------------------------
GRAPH_COUNTS = struct.Struct("<HH")

# §5 OPS ---------------------------------------------------------------------------------------------------------
OP_HEADER = struct.Struct("<BBBB")  # opcode, n_inputs, n_outputs, n_params
OP_PARAMS_ALIGN = 4


class OpSpec:
    """One row of the op table: code, name, input names (None = variadic, >= 1) and param names in order."""

    __slots__ = ("code", "name", "inputs", "params")

    def __init__(self, code, name, inputs, params):
        self.code = code
        self.name = name
        self.inputs = inputs
        self.params = params

    @property
    def n_params(self):
        return len(self.params)

    def __repr__(self):
        return "OpSpec(%d, %r)" % (self.code, self.name)


_CONV_PARAMS = ("stride_h", "stride_w", "dil_h", "dil_w", "pad_top", "pad_left", "in_off", "out_off", "act_min",
                "act_max")
_POOL_PARAMS = ("stride_h", "stride_w", "filter_h", "filter_w", "pad_top", "pad_left", "act_min", "act_max")

OPS = [
    OpSpec(1, "CONV_2D", ("x", "w", "b", "mult", "shift"), _CONV_PARAMS),
    OpSpec(2, "DEPTHWISE_CONV_2D", ("x", "w", "b", "mult", "shift"), _CONV_PARAMS + ("depth_multiplier",)),
    OpSpec(3, "FULLY_CONNECTED", ("x", "w", "b", "mult", "shift"), ("in_off", "w_off", "out_off", "act_min",
                                                                     "act_max")),
    OpSpec(4, "AVERAGE_POOL_2D", ("x",), _POOL_PARAMS),
    OpSpec(5, "MAX_POOL_2D", ("x",), _POOL_PARAMS),
    OpSpec(6, "ADD", ("a", "b"), ("a_off", "a_mult", "a_shift", "b_off", "b_mult", "b_shift", "left_shift",
                                  "out_mult", "out_shift", "out_off", "act_min", "act_max")),
    OpSpec(7, "MUL", ("a", "b"), ("a_off", "b_off", "out_mult", "out_shift", "out_off", "act_min", "act_max")),
    OpSpec(8, "SOFTMAX", ("x", "exp_table"), ()),
    OpSpec(9, "LUT", ("x", "table"), ()),
    OpSpec(10, "PAD", ("x",), ("before_0", "after_0", "before_1", "after_1", "before_2", "after_2", "before_3",
                               "after_3", "pad_value")),
    OpSpec(11, "MEAN", ("x",), ("axis_mask", "in_zp", "out_zp", "mult", "shift")),
    OpSpec(12, "CONCATENATION", None, ("axis",)),
    OpSpec(13, "QUANTIZE", ("x",), ()),
    OpSpec(14, "DEQUANTIZE", ("x",), ()),
    OpSpec(15, "COPY", ("x",), ()),
    OpSpec(16, "TREE_ENSEMBLE", ("x", "nodes", "leaves", "trees", "init"), ("frac_bits", "max_depth")),
    # §12 a stage of convolutions run tile by tile: the n_ops records after it (blob/patch.py)
    OpSpec(22, "PATCH", ("x", "tiles", "tile"), ("n_ops",)),
    # §11 classic scikit-learn models, float32 (kernels in blob/classic.py, tinyml/classic.py, tml_classic.c).
    # gamma and coef0 are binary32 bit patterns held in the i32 params.
    OpSpec(17, "KERNEL", ("x", "rows"), ("kernel", "gamma", "coef0", "degree")),
    OpSpec(18, "SVM_VOTE", ("k", "coef", "intercept", "starts"), ()),
    OpSpec(19, "KNN_VOTE", ("d", "labels"), ("k", "weights", "root")),
    OpSpec(20, "GAUSSIAN_NB", ("x", "theta", "w", "bias"), ()),
    OpSpec(21, "AFFINE", ("x", "m", "o"), ()),
]
OPS_BY_CODE = {s.code: s for s in OPS}
OPS_BY_NAME = {s.name: s for s in OPS}
N_OUTPUTS = 1  # every op has exactly one output
# Ops whose output may share arena bytes with an input (§5: LUT in place, elementwise ADD/MUL).
INPLACE_OPS = ("LUT", "ADD", "MUL")

SOFTMAX_TABLE_LEN = 256
LUT_TABLE_LEN = 256


def op_record_size(n_inputs, n_outputs, n_params):
    """Bytes of one OPS record (§5): header, u16 indices, padding to 4, i32 params."""
    head = OP_HEADER.size + 2 * (n_inputs + n_outputs)
    head += (-head) % OP_PARAMS_ALIGN
    return head + 4 * n_params
