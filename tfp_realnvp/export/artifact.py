"""Writing an ONNX or LiteRT artifact: a new folder, one file per signature, checked before it appears.

```none
PATH/
  log_prob.<ext>           x [n, *E] (, context [n, C])  -> log_prob [n]
  forward.<ext>            z [n, *E] (, context)         -> x [n, *E]
  inverse.<ext>            x [n, *E] (, context)         -> z [n, *E], log_det_jacobian [n]
  log_prob_integer.<ext>   x [n, *E] (, context)         -> log_prob [n]      (integer models)
  flow_config.json         the model's config, the signatures, K and the seed of log_prob_integer,
                           and the largest difference from the SavedModel per signature
```

One file per signature because an ONNX graph runs with every one of its inputs fed: a
`log_prob` request would otherwise have to send a `z`. The folder is written under a hidden
temporary name beside `PATH`, checked (`equivalence.compare`, each file in its own runtime) and
renamed to `PATH` only then; an existing `PATH` is never overwritten.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfp_realnvp import __version__
from tfp_realnvp.export import equivalence, graphs
from tfp_realnvp.model import FlowModel

__all__ = [
    "CONFIG_FILE",
    "UnsupportedModelError",
    "artifact_signatures",
    "write_artifact",
]

CONFIG_FILE = "flow_config.json"


class UnsupportedModelError(ValueError):
    """A model with an op the target runtime cannot hold."""


Convert = Callable[[graphs.FrozenSignature, pathlib.Path], None]
Run = Callable[[pathlib.Path, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def write_artifact(model: FlowModel, path: str | os.PathLike[str], *, fmt: str, suffix: str, convert: Convert,
                   run: Run, reference: equivalence.Reference | None) -> pathlib.Path:
    """Converts every signature with `convert(frozen, file)`, checks it with `run(file, inputs)`, publishes.

    Raises:
      TypeError: If `model` is not a `FlowModel`.
      ValueError: If its standardisation has not been fitted.
      FileExistsError: If `path` exists.
      UnsupportedModelError: From `convert`, for an op the runtime lacks.
      equivalence.ExportMismatchError: If the runtime's answers differ from the SavedModel's.
    """
    if not isinstance(model, FlowModel):
        raise TypeError(f"model must be a FlowModel; got {type(model).__name__}")
    if model.preprocessing.needs_adapt:
        raise ValueError("the model's standardisation has not been fitted: call model.fit(x) or model.adapt(x) "
                         "before exporting")
    path = pathlib.Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; not overwriting it (expected a new path for the {fmt} artifact)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    temp.chmod(0o755)
    try:
        frozen = graphs.freeze(model)
        for key, signature in frozen.items():
            convert(signature, temp / f"{key}{suffix}")
        if reference is None:
            reference = equivalence.reference(model)
        largest = equivalence.compare(fmt, lambda key, feeds: run(temp / f"{key}{suffix}", feeds), reference,
                                      list(frozen))
        (temp / CONFIG_FILE).write_text(json.dumps(_config(model, fmt, suffix, frozen, largest), indent=2) + "\n")
        if path.exists():
            raise FileExistsError(f"{path} already exists; not overwriting it")
        os.rename(temp, path)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return path


def _config(model: FlowModel, fmt: str, suffix: str, frozen: dict[str, graphs.FrozenSignature],
            largest: dict[str, float]) -> dict[str, Any]:
    def spec(s: Any) -> dict[str, Any]:
        return {"dtype": s.dtype.name, "shape": [-1 if d is None else d for d in s.shape.as_list()]}

    config: dict[str, Any] = {
        "tfp_realnvp_version": __version__,
        "format": fmt,
        "config": model.get_config(),
        "signatures": {key: {"file": f"{key}{suffix}", "inputs": {k: spec(s) for k, s in f.inputs.items()},
                             "outputs": f.outputs} for key, f in frozen.items()},
        "largest_difference_from_saved_model": largest,
        "tolerance": {"atol": equivalence.ATOL, "rtol": equivalence.RTOL},
    }
    if "log_prob_integer" in frozen:
        config["log_prob_integer"] = {"draws": graphs.INTEGER_DRAWS, "seed": graphs.INTEGER_SEED,
                                      "estimate": "log (1/K) sum_k p(x + u_k), u_k ~ U[0, 1)^E drawn at export"}
    return config


def artifact_signatures(folder: str | os.PathLike[str]) -> tuple[str, dict[str, dict[str, Any]]]:
    """`(format, {signature: {"inputs": ..., "outputs": ...}})` of an ONNX or LiteRT export, as its runtime sees it.

    Raises:
      FileNotFoundError: If `folder` has no `flow_config.json` of an ONNX or LiteRT export.
      ImportError: Without the format's extra.
    """
    config_path = pathlib.Path(folder) / CONFIG_FILE
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    fmt = config.get("format")
    if fmt not in ("onnx", "litert"):
        raise FileNotFoundError(f"{config_path} is not the flow_config.json of an ONNX or LiteRT export")
    if fmt == "onnx":
        from tfp_realnvp.export.onnx import signature_specs
    else:
        from tfp_realnvp.export.litert import signature_specs
    return fmt, {key: signature_specs(pathlib.Path(folder) / entry["file"])
                 for key, entry in config["signatures"].items()}
