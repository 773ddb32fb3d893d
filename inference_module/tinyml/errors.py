"""Errors raised by the tinyml runtime."""


class BlobError(ValueError):
    """The model blob is malformed or not supported by this runtime; nothing was executed."""


class SelfTestError(ValueError):
    """A golden test vector gave an output different from the expected one."""
