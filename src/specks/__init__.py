"""Specks: a small-object detection API on ONNX Runtime."""

__version__ = "0.1.0"
