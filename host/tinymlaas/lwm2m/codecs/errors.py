class CodecError(ValueError):
    """A payload that does not decode, or values that cannot be encoded, in a given content format."""
