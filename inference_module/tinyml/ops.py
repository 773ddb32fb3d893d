"""The op set of kernel ABI 1 (docs/blob-format.md §5): opcode -> name, operand counts, parameter count."""


from micropython import const
CONV_2D = const(1)
DEPTHWISE_CONV_2D = const(2)
FULLY_CONNECTED = const(3)
AVERAGE_POOL_2D = const(4)
MAX_POOL_2D = const(5)
ADD = const(6)
MUL = const(7)
SOFTMAX = const(8)
LUT = const(9)
PAD = const(10)
MEAN = const(11)
CONCATENATION = const(12)
QUANTIZE = const(13)
DEQUANTIZE = const(14)
COPY = const(15)
PATCH = const(22)  # §12: a stage of convolutions run tile by tile; checks and tile loop in patch.py
TREE_ENSEMBLE = const(16)  # §10; kernel and table checks in trees.py
KERNEL = const(17)  # §11, 17..21: classic scikit-learn models; kernels and checks in classic.py
SVM_VOTE = const(18)
KNN_VOTE = const(19)
GAUSSIAN_NB = const(20)
AFFINE = const(21)

# opcode: (name, n_inputs (0 = one or more), n_params)
OPS = {
    1: ("CONV_2D", 5, 10),
    2: ("DEPTHWISE_CONV_2D", 5, 11),
    3: ("FULLY_CONNECTED", 5, 5),
    4: ("AVERAGE_POOL_2D", 1, 8),
    5: ("MAX_POOL_2D", 1, 8),
    6: ("ADD", 2, 12),
    7: ("MUL", 2, 7),
    8: ("SOFTMAX", 2, 0),
    9: ("LUT", 2, 0),
    10: ("PAD", 1, 9),
    11: ("MEAN", 1, 5),
    12: ("CONCATENATION", 0, 1),
    13: ("QUANTIZE", 1, 0),
    14: ("DEQUANTIZE", 1, 0),
    15: ("COPY", 1, 0),
    16: ("TREE_ENSEMBLE", 5, 2),
    22: ("PATCH", 3, 1),
    17: ("KERNEL", 2, 4),
    18: ("SVM_VOTE", 4, 0),
    19: ("KNN_VOTE", 2, 3),
    20: ("GAUSSIAN_NB", 4, 0),
    21: ("AFFINE", 3, 0),
}

# Ops whose output may share arena bytes with an input (§5).
MAY_ALIAS = (LUT, ADD, MUL)

# Ops whose data operands may be const tensors (§5): TFLite models add, multiply or join constants.
CONST_OPERANDS = (ADD, MUL, CONCATENATION)


def name(code):
    return OPS[code][0]
