"""The TFLite flatbuffer schema (object API), loaded from TensorFlow's generated module without importing the
whole of TensorFlow (which takes seconds): the module only needs the `flatbuffers` package."""

import importlib.util
import os
import sys

_MODULE = "tinymlaas_tflite_schema"


def _load():
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    tf = importlib.util.find_spec("tensorflow")
    if tf is None or not tf.submodule_search_locations:
        raise ImportError("tensorflow is needed for its TFLite schema (pip install tensorflow-cpu)")
    path = os.path.join(list(tf.submodule_search_locations)[0], "lite", "python", "schema_py_generated.py")
    spec = importlib.util.spec_from_file_location(_MODULE, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = mod
    spec.loader.exec_module(mod)
    return mod


schema = _load()

BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TENSOR_TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
ACTIVATION_NAMES = {v: k for k, v in vars(schema.ActivationFunctionType).items() if not k.startswith("_")}
PADDING_NAMES = {v: k for k, v in vars(schema.Padding).items() if not k.startswith("_")}
