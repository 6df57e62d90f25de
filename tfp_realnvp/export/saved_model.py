"""export_saved_model: a `FlowModel` as a versioned SavedModel that TF Serving serves.

TF Serving watches a base directory and serves the highest integer-named version folder in it,
`base_dir/<version>/`, loading each with TensorFlow's C++ SavedModel loader (tag `serve`).
`export_saved_model` writes such a version with five signatures, each a pure TensorFlow graph
(no Python, no TensorFlow Probability needed to load it). With `E` the model's event shape
(`[D]` for vectors, `[H, W, C]` for images) and `f = bijector.inverse` the map from data `x` to
latent `z` (preprocessing included: standardisation, integer scaling, logit):

```none
serving_default, log_prob:  x [n, *E]                 -> log_prob [n] = log p(x)
sample:                     num_samples, seed,        -> samples [num_samples, *E]
                            temperature                  = f^{-1}(temperature * eps),
                                                         eps ~ base from seed [seed, 0]
forward:                    z [n, *E]                 -> x [n, *E] = f^{-1}(z)
inverse:                    x [n, *E]                 -> z [n, *E] = f(x),
                                                         log_det_jacobian [n] = log|det df/dx|
```

so that `log_prob = log p_base(z) + log_det_jacobian`. A model of integer data (`integer_levels`
`L`) adds

```none
log_prob_integer:           x [n, *E], integers       -> log_prob [n] = log (1/K) sum_k p(x + u_k),
                            in [0, L - 1]                u_k ~ U[0, 1)^E, K and the seed fixed
```

(`graphs.INTEGER_DRAWS`, `graphs.INTEGER_SEED`, also in `flow_config.json`): the dequantized
log-likelihood of the integer data clients hold, an estimate of `log P(x)` whose `K = 1` case is
the bound training reports; `log_prob` answers for continuous `x` (what `p` gives a point), which
for raw integers is neither. A value that is not an integer in `[0, L - 1]` is an error. A
conditional model (`context_size` C)
adds `context [n, C]` to every signature's inputs (`sample`: `[num_samples, C]`); a context of
one row is shared by the whole batch, any other row count that is not the batch's is an error. Clients send raw data: the
preprocessing is inside the graph, exactly as `FlowModel.log_prob` includes it. Every
`[n, *E]` input is checked at run time (`EnsureShape`), so a batch of the wrong event shape
fails instead of broadcasting. Float inputs and outputs have the model's `flow_dtype`; `num_samples`
is int32 and `seed` int64. A SavedModel signature has no default values, and TF Serving rejects
a request that lacks one of the signature's inputs ("input size does not match signature"), so a
`sample` request must send all three.

The export goes through `keras.export.ExportArchive` with the model tracked: a `tf.Module`
wrapping a Keras 3 model and saved with `tf.saved_model.save` loads in Python but fails in the
C++ loader ("Could not find variable").

Writes are atomic: the SavedModel is written under a hidden temporary name in `base_dir`
(`.tmp-<version>-<random>`, which TF Serving ignores, since it is not an integer) and renamed to
`<version>` when complete, so TF Serving never sees half a version; the temporary folder is
removed if the export fails. An existing version is never overwritten, and a model whose signatures would refuse a request
the base folder's latest version answers (a conditional model's `context` input, another event
shape) does not become its next version: TF Serving serves the newest, so its clients would break.

Example:

    >>> model = FlowModel(2, num_couplings=4, hidden_units=(64, 64))
    >>> model.fit(x_train, epochs=10)  # doctest: +SKIP
    >>> export_saved_model(model, "saved_models/two_moons")  # doctest: +SKIP
    PosixPath('saved_models/two_moons/1')
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable
from numbers import Integral
from typing import Any

import keras
import tensorflow as tf

from tfp_realnvp import __version__
from tfp_realnvp.export import graphs
from tfp_realnvp.files import publish_version, versions
from tfp_realnvp.model import FlowModel

__all__ = [
    "CONFIG_ASSET",
    "INTEGER_SIGNATURE",
    "SIGNATURE_KEYS",
    "IncompatibleVersionError",
    "export_saved_model",
    "load_exported_model",
]

SIGNATURE_KEYS: tuple[str, ...] = ("serving_default", "log_prob", "sample", "forward", "inverse")
"""The signatures every export has, in the order they are added."""

INTEGER_SIGNATURE = "log_prob_integer"
"""The signature a model of integer data adds: `log mean_k p(x + u_k)` of integer-valued `x`."""


class IncompatibleVersionError(ValueError):
    """A model whose signatures would refuse requests the base folder's latest version answers."""

CONFIG_ASSET = pathlib.PurePosixPath("assets.extra", "flow_config.json")
"""The model's configuration, relative to the version folder. `assets.extra/` is TF Serving's
place for files beside a SavedModel (e.g. warm-up requests); the loaders ignore it."""

_MAX_VERSION = 2**63 - 1  # TF Serving parses version folder names as int64


def _check_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, Integral):
        raise ValueError(
            f"version must be a positive integer or None; got {version!r} of type "
            f"{type(version).__name__}"
        )
    if not 1 <= int(version) <= _MAX_VERSION:
        raise ValueError(f"version must be in [1, 2**63 - 1] (TF Serving's int64); got {version}")
    return int(version)


_Signature = tuple[Callable[..., dict[str, tf.Tensor]], list[tf.TensorSpec]]


def _signature_functions(model: FlowModel) -> dict[str, _Signature]:
    """The signature functions and their input specs, by signature key."""
    event_shape, dtype = list(model.event_shape), model.flow_dtype
    bijector = model.distribution.bijector  # forward: z -> x, preprocessing included

    def batch(name: str) -> tf.TensorSpec:
        return tf.TensorSpec([None, *event_shape], dtype, name=name)

    def checked(tensor: tf.Tensor, shape: list[int | None] | None = None) -> tf.Tensor:
        # A placeholder's shape is not enforced when a server feeds it (a [n, 1] batch would
        # broadcast against [D] statistics); EnsureShape is, with a message naming both shapes.
        return tf.ensure_shape(tensor, [None, *event_shape] if shape is None else shape)

    size = model.context_size

    def context_for(context: tf.Tensor | None, rows: tf.Tensor, what: str) -> tf.Tensor | None:
        # A server feeds any shape: the width by EnsureShape, the rows by an assertion that names both.
        if context is None:
            return None
        context = tf.ensure_shape(context, [None, size])
        count = tf.shape(context)[0]
        check = tf.debugging.Assert(
            tf.logical_or(tf.equal(count, 1), tf.equal(count, rows)),
            ["context has", count, f"rows but {what} is", rows, "; expected as many rows, or 1 row to share"],
        )
        with tf.control_dependencies([check]):
            return tf.identity(context)

    def log_prob_of(x: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        x = checked(x)
        return {"log_prob": model.log_prob(x, context=context_for(context, tf.shape(x)[0], "the batch"))}

    def sample_of(
        num_samples: tf.Tensor, seed: tf.Tensor, temperature: tf.Tensor, context: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        # Scalars: a row-format request would send each as a batch of shape [1].
        num_samples, seed, temperature = (checked(t, []) for t in (num_samples, seed, temperature))
        checks = [
            tf.debugging.assert_non_negative(num_samples, message="sample: num_samples must be >= 0"),
            # NaN or infinite samples otherwise, without an error.
            tf.debugging.Assert(tf.math.is_finite(temperature) & (temperature >= 0),
                                ["sample: temperature must be a finite number >= 0; got", temperature]),
        ]
        # Without the dependency the sampler may run first and fail with its own message.
        with tf.control_dependencies(checks):
            num_samples, temperature = tf.identity(num_samples), tf.identity(temperature)
        context = context_for(context, num_samples, "num_samples")
        return {"samples": model.sample(num_samples, seed=seed, temperature=temperature, context=context)}

    def forward_of(z: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        z = checked(z)
        rows = tf.shape(z)[0]
        return {"x": bijector.forward(z, **model.bijector_kwargs(rows, context=context_for(context, rows, "the batch")))}

    def inverse_of(x: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        x = checked(x)
        rows = tf.shape(x)[0]
        kwargs = model.bijector_kwargs(rows, context=context_for(context, rows, "the batch"))
        return {
            "z": bijector.inverse(x, **kwargs),
            "log_det_jacobian": bijector.inverse_log_det_jacobian(x, event_ndims=len(event_shape), **kwargs),
        }

    def log_prob_integer_of(x: tf.Tensor, context: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        x = checked(x)
        levels = model.preprocessing.integer_levels
        valid = graphs.integer_rows_valid(model, x)
        check = tf.debugging.Assert(tf.reduce_all(valid), [
            f"log_prob_integer takes integers in [0, {levels - 1}] (integer_levels={levels}); rows",
            tf.where(tf.logical_not(valid))[:, 0], "hold other values (send raw integer data, not scaled or noised)"])
        with tf.control_dependencies([check]):
            x = tf.identity(x)
        context = context_for(context, tf.shape(x)[0], "the batch")
        return {"log_prob": graphs.integer_log_prob(model, x, context)}

    sample_specs = [
        tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.int64, name="seed"),
        tf.TensorSpec([], dtype, name="temperature"),
    ]
    # A conditional model: every signature takes the context [n, C] beside its other inputs
    # (an unconditional one leaves the functions' `context=None` default).
    context = [tf.TensorSpec([None, size], dtype, name="context")] if size else []
    signatures = {
        "serving_default": (log_prob_of, [batch("x"), *context]),
        "log_prob": (log_prob_of, [batch("x"), *context]),
        "sample": (sample_of, [*sample_specs, *context]),
        "forward": (forward_of, [batch("z"), *context]),
        "inverse": (inverse_of, [batch("x"), *context]),
    }
    if model.preprocessing.integer_levels is not None:
        signatures[INTEGER_SIGNATURE] = (log_prob_integer_of, [batch("x"), *context])
    return signatures


def signature_keys(model: FlowModel) -> list[str]:
    """The signatures `model`'s export has: `SIGNATURE_KEYS`, and `log_prob_integer` for integer data."""
    return [*SIGNATURE_KEYS, *([INTEGER_SIGNATURE] if model.preprocessing.integer_levels is not None else [])]


def _flow_config(model: FlowModel) -> dict[str, Any]:
    return {
        "tfp_realnvp_version": __version__,
        "config": model.get_config(),
        "signatures": signature_keys(model),
        **({INTEGER_SIGNATURE: {"draws": graphs.INTEGER_DRAWS, "seed": graphs.INTEGER_SEED}}
           if model.preprocessing.integer_levels is not None else {}),
    }


def _write_saved_model(model: FlowModel, path: pathlib.Path) -> None:
    """Writes the SavedModel (signatures and `assets.extra/flow_config.json`) into `path`."""
    archive = keras.export.ExportArchive()
    archive.track(model)  # the variables then live in the SavedModel the C++ loader restores
    added: dict[int, Any] = {}  # serving_default is log_prob: traced once, saved under both keys
    for key, (function, input_signature) in _signature_functions(model).items():
        if id(function) in added:
            archive.add_endpoint(name=key, fn=added[id(function)])
            continue
        added[id(function)] = archive.add_endpoint(name=key, fn=function, input_signature=input_signature)
        added[id(function)].get_concrete_function()
    archive.write_out(str(path), verbose=False)
    config_path = path / CONFIG_ASSET
    config_path.parent.mkdir(exist_ok=True)
    config_path.write_text(json.dumps(_flow_config(model), indent=2) + "\n")


def export_saved_model(
    model: FlowModel,
    base_dir: str | os.PathLike[str],
    *,
    version: int | None = None,
) -> pathlib.Path:
    """Exports `model` as `base_dir/<version>/`, a SavedModel that TF Serving serves.

    The signatures (inputs and outputs by name, `E = model.event_shape`, float tensors in
    `model.flow_dtype`, every `[n, *E]` batch of any size `n`, checked to have event shape `E`):

    ```none
    serving_default, log_prob:  x [n, *E]                    -> log_prob [n]
    sample:                     num_samples (int32), seed (int64),
                                temperature (float), scalars -> samples [num_samples, *E]
    forward:                    z [n, *E]                    -> x [n, *E]
    inverse:                    x [n, *E]                    -> z [n, *E], log_det_jacobian [n]
    ```

    A conditional model's signatures take `context` too: `[n, C]` (or `[1, C]`, shared), and for
    `sample` `[num_samples, C]`.

    `log_prob` equals `model.log_prob(x)` (preprocessing included); a row with a NaN gives a NaN
    `log_prob` and leaves the other rows alone. `sample` equals
    `model.sample(num_samples, seed=seed, temperature=temperature)`: the stateless seed
    `[seed, 0]`, so the same seed gives the same samples. `log_det_jacobian` is
    `log|det dz/dx|`, with the preprocessing's part. The folder also holds
    `assets.extra/flow_config.json` (the model's config and the package version).

    The SavedModel is written under a temporary name in `base_dir` and renamed to `<version>`
    when complete; on failure the temporary folder is removed. A process killed mid-export can
    leave a `.tmp-*` folder, which TF Serving ignores (it is not a version number).

    Args:
      model: A `FlowModel` with fitted preprocessing statistics (after `fit` or `adapt`).
      base_dir: The model's folder, TF Serving's `--model_base_path`; created if missing.
      version: The version number, a positive integer not already in `base_dir`. Defaults to
        `None`: one more than the highest existing version, or 1.

    Returns:
      The path of the new version folder, `base_dir/<version>`.

    Raises:
      TypeError: If `model` is not a `FlowModel`.
      ValueError: If `version` is not a positive integer, or the model's standardisation has
        not been fitted.
      FileExistsError: If `version` already exists in `base_dir` (also as e.g. `003`).
      IncompatibleVersionError: If the model's signatures would refuse a request the latest
        version in `base_dir` answers (a missing signature, another input or output), e.g. a
        conditional model exported beside an unconditional one.
      NotADirectoryError: If `base_dir` exists and is not a directory.

    Example:

    ```python
    model = FlowModel(2, num_couplings=4, hidden_units=(64, 64))
    model.compile(optimizer="adam")
    model.fit(x_train, epochs=10, batch_size=256)
    export_saved_model(model, "saved_models/two_moons")  # saved_models/two_moons/1
    export_saved_model(model, "saved_models/two_moons")  # saved_models/two_moons/2
    ```
    """
    if not isinstance(model, FlowModel):
        raise TypeError(f"model must be a FlowModel; got {type(model).__name__}")
    if version is not None:
        version = _check_version(version)
    if model.preprocessing.needs_adapt:
        raise ValueError(
            "the model's standardisation has not been fitted: call model.fit(x) or "
            "model.adapt(x) before exporting"
        )
    base_dir = pathlib.Path(base_dir)
    if base_dir.exists() and not base_dir.is_dir():
        raise NotADirectoryError(f"base_dir {base_dir} exists and is not a directory")

    def write(folder: pathlib.Path) -> None:
        _write_saved_model(model, folder)
        _check_compatible(base_dir, folder)

    return publish_version(base_dir, write, version=version)


def _signatures_of(folder: pathlib.Path) -> dict[str, Any]:
    from tfp_realnvp.serving_check import signature_specs  # pylint: disable=import-outside-toplevel

    def plain(tensors: dict[str, Any]) -> dict[str, Any]:
        return {key: (spec["dtype"], spec["shape"]) for key, spec in tensors.items()}

    return {key: (plain(s["inputs"]), plain(s["outputs"])) for key, s in signature_specs(folder).items()}


def _check_compatible(base_dir: pathlib.Path, folder: pathlib.Path) -> None:
    """Raises IncompatibleVersionError if `folder` would refuse a request the latest version answers.

    TF Serving serves the highest version: every signature of the latest version must be in the new
    one with the same inputs and outputs (names, dtypes, shapes). New signatures may be added.
    """
    served = [path for path in versions(base_dir).values() if (path / "saved_model.pb").is_file()]
    if not served:
        return
    latest = served[-1]
    try:
        new, old = _signatures_of(folder), _signatures_of(latest)
    except ValueError:  # a folder that is not a SavedModel TF Serving could load: nothing to keep answering
        return
    for key, (inputs, outputs) in old.items():
        if key not in new:
            problem = f"has no signature {key!r}"
        elif new[key][0] != inputs:
            problem = f"signature {key!r} takes inputs {_describe(new[key][0])}, not {_describe(inputs)}"
        elif new[key][1] != outputs:
            problem = f"signature {key!r} returns {_describe(new[key][1])}, not {_describe(outputs)}"
        else:
            continue
        raise IncompatibleVersionError(
            f"this model {problem} as {latest} does: as the next version in {base_dir} (TF Serving serves the "
            f"newest) it would refuse its clients' requests; export it to a base folder of its own, e.g. "
            f"{base_dir}_conditional for a conditional model"
        )


def _describe(tensors: dict[str, Any]) -> str:
    return ", ".join(f"{key} {dtype} [{', '.join(map(str, shape))}]" for key, (dtype, shape) in tensors.items())


def load_exported_model(version_dir: str | os.PathLike[str]) -> FlowModel:
    """The `FlowModel` a version folder was exported from: its config, and its variables restored.

    For models that exist only as exports (the shipped `saved_models/*/1`), so that they can be
    exported again in another format.

    Raises:
      FileNotFoundError: If `version_dir` has no `assets.extra/flow_config.json`.
      ValueError: If the SavedModel's variables do not fit the config's model.
    """
    version_dir = pathlib.Path(version_dir)
    config_path = version_dir / CONFIG_ASSET
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} does not exist; expected a version folder written by export_saved_model")
    model = FlowModel.from_config(json.loads(config_path.read_text())["config"])
    # ExportArchive checkpoints the tracked model's variables as `variables/<i>`, in the model's order; reading the
    # checkpoint skips loading the graph (seconds per model).
    reader = tf.train.load_checkpoint(str(version_dir / "variables" / "variables"))
    keys = [f"variables/{i}/.ATTRIBUTES/VARIABLE_VALUE" for i in range(len(model.variables))]
    if not all(reader.has_tensor(key) for key in keys) or reader.has_tensor(
            f"variables/{len(keys)}/.ATTRIBUTES/VARIABLE_VALUE"):
        raise ValueError(f"the variables of {version_dir} do not fit the model its flow_config.json describes")
    for variable, key in zip(model.variables, keys):
        value = reader.get_tensor(key)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"variable {variable.path} of {version_dir} has shape {value.shape}; the model its "
                             f"flow_config.json describes has {tuple(variable.shape)}")
        variable.assign(value)
    return model
