"""The model blob (docs/blob-format.md): format constants, writer, reader, NumPy reference executor."""
