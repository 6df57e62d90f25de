"""Exports: a TF Serving SavedModel, ONNX and LiteRT, each artifact checked against the SavedModel.

- `saved_model.py`: `export_saved_model`, versioned SavedModels for TF Serving (the reference).
- `graphs.py`: the signatures as plain graphs the ONNX and LiteRT converters translate correctly.
- `equivalence.py`: fixed inputs, the SavedModel's answers in TensorFlow's C++ loader, the tolerance.
- `artifact.py`: a new folder, one file per signature, checked before it appears.
- `onnx.py`, `litert.py`: `export_onnx` (onnxruntime) and `export_litert` (the LiteRT interpreter).
"""

from __future__ import annotations

from tfp_realnvp.export.litert import export_litert
from tfp_realnvp.export.onnx import export_onnx
from tfp_realnvp.export.saved_model import CONFIG_ASSET, SIGNATURE_KEYS, export_saved_model

__all__ = [
    "CONFIG_ASSET",
    "FORMATS",
    "SIGNATURE_KEYS",
    "export_litert",
    "export_onnx",
    "export_saved_model",
]

FORMATS: tuple[str, ...] = ("saved_model", "onnx", "litert")
"""The export formats, SavedModel first (the default)."""
