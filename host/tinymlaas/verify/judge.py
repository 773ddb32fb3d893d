"""The reference a blob is judged against: TensorFlow Lite Micro running the original .tflite.

TFLite Micro is the judge because device runtimes promise bit-exactness with it. When it cannot load or allocate a
model (e.g. an op it does not register, such as REDUCE_PROD in a Keras dynamic-batch shape sub-graph), TFLite's
own reference kernels (LiteRT with BUILTIN_REF) stand in: they are the kernels TFLite Micro's are ported from.
"""

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TFLM = "tflite-micro"
LITERT_REF = "litert-builtin-ref"


class JudgeError(RuntimeError):
    pass


class TFLMJudge:
    name = TFLM
    rounding = "double"  # TFLite Micro's MultiplyByQuantizedMultiplier: the blob's arithmetic

    def __init__(self, model_bytes):
        from tflite_micro.python.tflite_micro import runtime

        from ai_edge_litert.interpreter import Interpreter

        self.interp = runtime.Interpreter.from_bytes(bytes(model_bytes))
        # The TFLM binding cannot say how many outputs there are (probing past the end prints to stderr).
        self.n_outputs = len(Interpreter(model_content=bytes(model_bytes)).get_output_details())

    def run(self, input_sets):
        outs = []
        for inputs in input_sets:
            for k, x in enumerate(inputs):
                self.interp.set_input(x, k)
            self.interp.invoke()
            outs.append([np.array(self.interp.get_output(k)) for k in range(self.n_outputs)])
        return outs


class LiteRTReferenceJudge:
    name = LITERT_REF
    # The LiteRT wheels are built with TFLITE_SINGLE_ROUNDING: their requantization rounds once, TFLite Micro's
    # twice, so at rare rounding ties LiteRT's result is 1 LSB off TFLite Micro's. A blob-exact runtime can
    # therefore differ from this judge by at most 1 at such elements (docs/verification.md).
    rounding = "single"

    def __init__(self, model_bytes):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.interp = Interpreter(model_content=bytes(model_bytes),
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        self.interp.allocate_tensors()
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()

    def run(self, input_sets):
        outs = []
        for inputs in input_sets:
            for d, x in zip(self.inputs, inputs):
                self.interp.set_tensor(d["index"], x)
            self.interp.invoke()
            outs.append([self.interp.get_tensor(d["index"]).copy() for d in self.outputs])
        return outs


def load_judge(model_bytes):
    """TFLite Micro if it can run the model, else LiteRT's reference kernels. `.why_fallback` says why."""
    try:
        judge = TFLMJudge(model_bytes)
        judge.why_fallback = None
        return judge
    except Exception as e:  # noqa: BLE001 -- any failure to load/allocate means "TFLM cannot run this model"
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    try:
        judge = LiteRTReferenceJudge(model_bytes)
    except Exception as e:  # noqa: BLE001
        raise JudgeError("neither TFLite Micro (%s) nor LiteRT's reference kernels (%s) can run the model"
                         % (reason, e)) from e
    judge.why_fallback = "TFLite Micro cannot run the model: %s" % reason
    return judge
