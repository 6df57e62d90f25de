"""export_litert: a flow as LiteRT (TensorFlow Lite) models, checked in the LiteRT interpreter.

Converted by TensorFlow's own LiteRT converter from the frozen, constant-folded signatures of
`graphs`: without the folding, the converter keeps only the first element of a vector
`tfb.Scale`'s constant log-determinant (the shipped digits model answered 11.0 nats low on every
input). One `.tflite` file per signature in a new folder (`artifact`), each run in the LiteRT
interpreter (`ai_edge_litert`) against the SavedModel in TensorFlow's C++ loader before the
folder appears. Each file has one signature, `serving_default`, whose input and output names
are the signature's keys.

What LiteRT cannot do here: the seeded `sample` signature (TensorFlow's stateless random ops are
not LiteRT builtins; a client samples with `forward(temperature * eps)` on its own normal draws),
and float64 models (LiteRT's kernels are float32: the converter refuses them, and the export says
which op).

Example:

    >>> export_litert(model, "exports/two_moons.litert")  # doctest: +SKIP
    >>> runner = Interpreter("exports/two_moons.litert/log_prob.tflite").get_signature_runner()  # doctest: +SKIP
    >>> runner(x=np.array([[0.5, 0.25]], np.float32))["log_prob"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from tfp_realnvp.export import equivalence, graphs
from tfp_realnvp.export.artifact import UnsupportedModelError, write_artifact
from tfp_realnvp.model import FlowModel

__all__ = [
    "check_installed",
    "convert_signature",
    "export_litert",
    "run_litert",
    "signature_specs",
]

_EXTRA = "pip install 'tfp-realnvp[litert]'"


def _interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError(f"the litert format needs the LiteRT interpreter (ai-edge-litert is missing): "
                          f"{_EXTRA}") from None
    return Interpreter


def convert_signature(signature: graphs.FrozenSignature, file: pathlib.Path) -> None:
    """Converts one frozen signature to `file`; UnsupportedModelError names an op the format lacks."""
    key = file.stem
    if any(spec.dtype != tf.float32 for spec in signature.inputs.values()):
        dtype = next(spec.dtype.name for spec in signature.inputs.values() if spec.dtype != tf.float32)
        raise UnsupportedModelError(f"the litert format cannot hold signature {key!r}: its inputs are {dtype}, and "
                                    "LiteRT's kernels take float32 (export a float32 model)")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([signature.concrete_function()], tf.Module())
    try:
        blob = converter.convert()
    except Exception as error:  # noqa: BLE001  (ConverterError and friends)
        ops = re.findall(r"'tf\.(\w+)'", str(error))
        raise UnsupportedModelError(
            f"the litert format cannot hold {'op ' + ops[0] if ops else 'this model'} (signature {key!r}): "
            f"{str(error).strip().splitlines()[0]}") from None
    file.write_bytes(blob)


def run_litert(file: str | os.PathLike[str], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs one artifact file in the LiteRT interpreter: `{output key: array}`."""
    runner = _interpreter()(model_path=os.fspath(file)).get_signature_runner()
    return {key: np.array(value) for key, value in runner(**inputs).items()}


def check_installed() -> None:
    """Raises ImportError, naming the extra to install, unless the LiteRT interpreter imports."""
    _interpreter()


def signature_specs(file: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """`{"inputs": {key: spec}, "outputs": {key: spec}}` of one artifact file, as the interpreter sees it."""
    runner = _interpreter()(model_path=os.fspath(file)).get_signature_runner()

    def spec(detail: dict[str, Any]) -> dict[str, Any]:
        return {"dtype": np.dtype(detail["dtype"]).name, "shape": tuple(int(d) for d in detail["shape_signature"])}

    return {"inputs": {k: spec(d) for k, d in runner.get_input_details().items()},
            "outputs": {k: spec(d) for k, d in runner.get_output_details().items()}}


def export_litert(model: FlowModel, path: str | os.PathLike[str], *,
                  reference: equivalence.Reference | None = None) -> pathlib.Path:
    """Exports `model` as a new folder of LiteRT models, one per signature, checked in the interpreter.

    Args:
      model: A float32 `FlowModel` with fitted preprocessing statistics.
      path: The new folder, e.g. `exports/two_moons.litert`; must not exist.
      reference: The SavedModel's answers (`equivalence.reference(model)`), to share between
        exports of one model. Defaults to `None`: computed here.

    Returns:
      The folder.

    Raises:
      ImportError: Without the `litert` extra (the message names it).
      FileExistsError: If `path` exists.
      UnsupportedModelError: For a model LiteRT cannot hold (float64; an op it lacks), named.
      ExportMismatchError: If the interpreter's answers differ from the SavedModel's beyond the tolerance.
    """
    check_installed()
    return write_artifact(model, path, fmt="litert", suffix=".tflite", convert=convert_signature, run=run_litert,
                          reference=reference)
