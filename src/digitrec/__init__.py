"""digitrec: handwritten digit recognition with PyTorch, end to end."""

__version__ = "0.1.0"
