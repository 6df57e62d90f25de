"""export_onnx: a flow as ONNX models, run by onnxruntime and checked against the SavedModel.

Converted by tf2onnx from the frozen, constant-folded signatures of `graphs` (the base density
written out, `Log1p` rewritten), one `.onnx` file per signature in a new folder (`artifact`),
each checked in onnxruntime against the SavedModel in TensorFlow's C++ loader before the folder
appears. Input and output names are the signature's keys (`x`, `context`; `log_prob`).

What ONNX cannot do here: the seeded `sample` signature. TensorFlow's stateless Philox draws have
no ONNX op (ONNX's `RandomNormal` takes a seed fixed in the graph), so a client samples with
`forward` on its own normal draws, `forward(temperature * eps)`.

Example:

    >>> export_onnx(model, "exports/two_moons.onnx")  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("exports/two_moons.onnx/log_prob.onnx")  # doctest: +SKIP
    >>> session.run(["log_prob"], {"x": np.array([[0.5, 0.25]], np.float32)})  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfp_realnvp.export import equivalence, graphs
from tfp_realnvp.export.artifact import UnsupportedModelError, write_artifact
from tfp_realnvp.model import FlowModel

__all__ = [
    "convert_signature",
    "OPSET",
    "check_installed",
    "export_onnx",
]

OPSET = 17
"""The ONNX opset the artifacts use (onnxruntime 1.16 and later run it)."""

_EXTRA = "pip install 'tfp-realnvp[onnx]'"
_DOCS = {  # each model's doc_string, which onnxruntime shows as its description
    "log_prob": "log p(x) in nats per row; x raw data [n, *event_shape] (preprocessing inside)",
    "forward": "x = g(z): latent [n, *event_shape] to data",
    "inverse": "z = g^-1(x) and log|det dz/dx| per row",
    "log_prob_integer": (f"log (1/K) sum_k p(x + u_k) per row of raw integer data x, u_k ~ U[0, 1) drawn at export: "
                         f"K = {graphs.INTEGER_DRAWS}, stateless seed [{graphs.INTEGER_SEED}, 0]; NaN for a row that is "
                         "not integers in [0, levels - 1]"),
}


def _modules():  # the extra's modules, or one line naming it
    try:
        import onnx
        import onnxruntime
        import tf2onnx
    except ImportError as error:
        raise ImportError(f"the onnx format needs tf2onnx, onnx and onnxruntime ({error.name} is missing): "
                          f"{_EXTRA}") from None
    return tf2onnx, onnx, onnxruntime


def convert_signature(signature: graphs.FrozenSignature, file: pathlib.Path) -> None:
    """Converts one frozen signature to `file`; UnsupportedModelError names an op the format lacks."""
    tf2onnx, onnx, _ = _modules()
    key = file.stem
    try:
        proto, _ = tf2onnx.convert.from_graph_def(
            graphs.rewrite_log1p(signature.graph_def), input_names=[f"{k}:0" for k in signature.inputs],
            output_names=[f"{k}:0" for k in signature.outputs], opset=OPSET)
    except Exception as error:  # noqa: BLE001  (tf2onnx raises bare exceptions per op)
        op = re.search(r"op=?\s*'?(\w+)", str(error))
        raise UnsupportedModelError(f"the onnx format cannot hold signature {key!r}: tf2onnx failed"
                                    f"{' at op ' + op.group(1) if op else ''}: {str(error).splitlines()[0]}") from None
    unknown = sorted({n.op_type for n in proto.graph.node if n.domain in ("", "ai.onnx")
                      and not onnx.defs.has(n.op_type)})
    if unknown:
        raise UnsupportedModelError(f"the onnx format cannot hold op {unknown[0]} (signature {key!r}): tf2onnx "
                                    f"{tf2onnx.__version__} has no ONNX translation for {', '.join(unknown)}")
    # The signature's keys as the graph's input and output names: `x`, not `x:0`.
    renames = {f"{k}:0": k for k in (*signature.inputs, *signature.outputs)}
    for value in (*proto.graph.input, *proto.graph.output):
        value.name = renames.get(value.name, value.name)
    for node in proto.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    proto.doc_string = _DOCS.get(key, "")
    proto.producer_name = "tfp_realnvp"
    file.write_bytes(proto.SerializeToString())


def run_onnx(file: str | os.PathLike[str], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs one artifact file in onnxruntime (CPU): `{output key: array}`."""
    _, _, onnxruntime = _modules()
    session = onnxruntime.InferenceSession(os.fspath(file), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(inputs))))


def check_installed() -> None:
    """Raises ImportError, naming the extra to install, unless tf2onnx, onnx and onnxruntime import."""
    _modules()


def signature_specs(file: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """`{"inputs": {key: spec}, "outputs": {key: spec}}` of one artifact file, as onnxruntime sees it."""
    _, _, onnxruntime = _modules()
    session = onnxruntime.InferenceSession(os.fspath(file), providers=["CPUExecutionProvider"])

    def spec(arg: Any) -> dict[str, Any]:
        dtype = arg.type.removeprefix("tensor(").removesuffix(")").replace("float", "float32").replace("double", "float64")
        return {"dtype": dtype, "shape": tuple(d if isinstance(d, int) else -1 for d in arg.shape)}

    return {"inputs": {a.name: spec(a) for a in session.get_inputs()},
            "outputs": {a.name: spec(a) for a in session.get_outputs()}}


def export_onnx(model: FlowModel, path: str | os.PathLike[str], *,
                reference: equivalence.Reference | None = None) -> pathlib.Path:
    """Exports `model` as a new folder of ONNX models, one per signature, checked in onnxruntime.

    `log_prob` holds the preprocessing, as the SavedModel's does: clients send raw data. Every
    signature is run in onnxruntime on fixed inputs drawn from the model and compared with the
    SavedModel in TensorFlow's C++ loader before the folder appears (`equivalence`).

    Args:
      model: A `FlowModel` with fitted preprocessing statistics.
      path: The new folder, e.g. `exports/two_moons.onnx`; must not exist.
      reference: The SavedModel's answers (`equivalence.reference(model)`), to share between
        exports of one model. Defaults to `None`: computed here.

    Returns:
      The folder.

    Raises:
      ImportError: Without the `onnx` extra (the message names it).
      FileExistsError: If `path` exists.
      UnsupportedModelError: For an op ONNX (or tf2onnx) cannot hold, named with the signature.
      ExportMismatchError: If onnxruntime's answers differ from the SavedModel's beyond the tolerance.
    """
    check_installed()
    return write_artifact(model, path, fmt="onnx", suffix=".onnx", convert=convert_signature, run=run_onnx,
                          reference=reference)
