"""tinymlaas: TinyML as-a-Service.

Data flows one way: model -> compiler passes -> blob -> registry -> selection -> LwM2M delivery -> device install
-> inference. Each stage is a sub-package here; the device-side code lives in the repository's inference_module/ and
lwm2m_client/ folders and runs in MicroPython, never imported into CPython.
"""

__version__ = "0.1.0"
