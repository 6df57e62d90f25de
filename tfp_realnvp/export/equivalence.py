"""The check every ONNX and LiteRT artifact passes: its own runtime against the SavedModel in C++.

An artifact is run in the runtime a client will use (onnxruntime; the LiteRT interpreter) on
fixed inputs drawn from the model, and compared output by output with the same model's
SavedModel run through TensorFlow's C++ loader (`tfp_realnvp.serving_check`, the loader TF
Serving uses). Beyond the tolerance below the artifact is refused, with one error naming the
signature, the input row and the largest difference, and nothing is written.

```none
inputs (ROWS rows, seed 0):  x = model.sample(ROWS)      log_prob, inverse
                             floor(x) clipped to [0, L-1] log_prob_integer
                             z ~ N(0, I)                  forward
                             context ~ N(0, I) [ROWS, C]  every signature of a conditional model
accepted:                    |artifact - saved_model| <= ATOL + RTOL * |saved_model|, elementwise
```
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Callable, Mapping

import numpy as np

from tfp_realnvp.export.graphs import model_digest, remember
from tfp_realnvp.model import FlowModel

__all__ = [
    "ATOL",
    "ROWS",
    "RTOL",
    "ExportMismatchError",
    "Reference",
    "compare",
    "fixed_inputs",
    "reference",
]

ROWS = 8
"""Rows of each fixed input."""

# float32 through a flow in another runtime's kernels (onnxruntime's MLAS, LiteRT's XNNPACK) sums
# in another order: on the shipped models log_prob (~100 nats) differed by at most 4.6e-5 and
# latents by 2e-5 (benchmarks/EXPORT.md). 1e-3 + 1e-4 |value| leaves twenty times that, and is
# ten thousand times below the 11-nat error LiteRT's converter made on the digits model.
ATOL = 1e-3
RTOL = 1e-4


class ExportMismatchError(ValueError):
    """An artifact whose runtime answers differ from the SavedModel's beyond the tolerance."""


class Reference:
    """Fixed inputs per signature and the SavedModel's answers to them in TensorFlow's C++ loader.

    Computed once per model and reusable for several artifacts (`export_onnx(..., reference=r)`).

    Attributes:
      inputs: `{signature: {input key: array}}`.
      outputs: `{signature: {output key: array}}`, from the C++ loader.
    """

    def __init__(self, inputs: dict[str, dict[str, np.ndarray]], outputs: dict[str, dict[str, np.ndarray]]) -> None:
        self.inputs = inputs
        self.outputs = outputs


def fixed_inputs(model: FlowModel, rows: int = ROWS, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The inputs of every convertible signature, drawn from the model (see the module's table)."""
    dtype = model.flow_dtype.as_numpy_dtype
    rng = np.random.default_rng(seed)
    context = {}
    if model.context_size:
        context = {"context": rng.normal(size=(rows, model.context_size)).astype(dtype)}
    x = model.sample(rows, seed=seed, context=context.get("context")).numpy().astype(dtype)
    inputs = {
        "log_prob": {"x": x, **context},
        "forward": {"z": rng.normal(size=(rows, *model.event_shape)).astype(dtype), **context},
        "inverse": {"x": x, **context},
    }
    levels = model.preprocessing.integer_levels
    if levels is not None:
        inputs["log_prob_integer"] = {"x": model.to_levels(x).astype(dtype), **context}
    return inputs


# (digest, rows, seed) -> Reference: an ONNX and a LiteRT export of one model share one set of C++ loader
# runs (a SavedModel export and a loader process per signature).
_REFERENCES: collections.OrderedDict[tuple[str, int, int], Reference] = collections.OrderedDict()


def reference(model: FlowModel, *, rows: int = ROWS, seed: int = 0) -> Reference:
    """Exports `model` as a SavedModel (temporarily) and runs the fixed inputs through the C++ loader.

    Cached by `graphs.model_digest`: a second call for a model of the same config and weights returns
    the first's answers.

    Raises:
      RuntimeError: If the C++ loader cannot be built or fails.
    """
    return remember(_REFERENCES, (model_digest(model), rows, seed), lambda: _reference(model, rows, seed))


def _reference(model: FlowModel, rows: int, seed: int) -> Reference:
    from tfp_realnvp.export.saved_model import export_saved_model
    from tfp_realnvp.serving_check import run_signature_c

    inputs = fixed_inputs(model, rows, seed)
    with tempfile.TemporaryDirectory(prefix="tfp_realnvp_reference_") as tmp:
        path = export_saved_model(model, tmp)
        outputs = {key: run_signature_c(path, key, feeds) for key, feeds in inputs.items()}
    return Reference(inputs, outputs)


def compare(fmt: str, run: Callable[[str, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
            reference: Reference, signatures: list[str]) -> dict[str, float]:
    """Runs each signature through `run(signature, inputs)` and compares with the reference.

    Returns:
      The largest absolute difference per signature (for the record: `flow_config.json`).

    Raises:
      ExportMismatchError: Beyond `ATOL + RTOL * |reference|`, naming the signature, the output, the
        input row and the largest difference.
    """
    largest: dict[str, float] = {}
    for key in signatures:
        feeds, expected = reference.inputs[key], reference.outputs[key]
        got = run(key, feeds)
        worst = 0.0
        for name, want in expected.items():
            have = np.asarray(got[name], dtype=np.float64).reshape(want.shape)
            want = want.astype(np.float64)
            diff = np.abs(have - want)
            diff[np.isnan(have) & np.isnan(want)] = 0.0
            diff[np.isnan(diff)] = np.inf  # NaN on one side only
            excess = diff - (ATOL + RTOL * np.abs(np.nan_to_num(want)))
            if excess.size and excess.max() > 0:
                at = np.unravel_index(int(np.argmax(excess)), excess.shape)
                raise ExportMismatchError(
                    f"the {fmt} artifact's signature {key!r} differs from the SavedModel in TensorFlow's C++ loader: "
                    f"output {name!r} for input row {at[0]} is {have[at]:.6g} against {want[at]:.6g} (largest "
                    f"difference {diff.max():.3g} > tolerance {ATOL:g} + {RTOL:g} |value|); the artifact is not written"
                )
            worst = max(worst, float(diff.max()) if diff.size else 0.0)
        largest[key] = worst
    return largest
