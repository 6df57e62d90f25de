"""Training as a library: a configuration, the per-dataset recipes, and `fit_flow`.

```python
config = TrainingConfig.for_dataset("two_moons", epochs=20)  # the recipe, one field changed
result = fit_flow(config)                                    # loads the data, builds, fits, evaluates
result.metrics["test"]["nll"], result.model                  # a FlowModel, ready to save or export
```

`TrainingConfig` holds everything that decides a run (data, flow, optimisation, seed), with
documented defaults, and round-trips through JSON: a run's `settings.json` is one, and
`fit_flow(TrainingConfig.from_file(path))` repeats the run. `RECIPES` holds, per dataset, the
fields in which its recipe differs from the defaults; `TrainingConfig.for_dataset` applies them.
The command line (`tfp-realnvp train`) and the benchmarks build a configuration and call
`fit_flow`; neither holds a copy of the recipe.

The recipe `fit_flow` runs: Adam on the mean negative log-likelihood, the learning rate
decayed by a cosine (after an optional linear warm-up) to `learning_rate_floor` times its
initial value, the standardisation fitted on the training rows only, early stopping on the
validation NLL that restores the best weights, optional Gaussian jitter of each training batch,
and optionally several restarts of which the one with the lowest training NLL is kept (as
`sklearn.mixture.GaussianMixture(n_init=...)` keeps its best start).

This module imports TensorFlow only when `fit_flow` runs, so the command line can read the
recipes for its `--help` without paying the import.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tfp_realnvp import checks
from tfp_realnvp.choices import BUILTIN_FLOWS, DISTRIBUTIONS

if TYPE_CHECKING:
    import keras

    from tfp_realnvp.data import Dataset
    from tfp_realnvp.examples import Examples
    from tfp_realnvp.model import FlowModel

__all__ = [
    "ConfigError",
    "RECIPES",
    "TABLE_FIELDS",
    "TrainingConfig",
    "TrainingResult",
    "best_epoch",
    "evaluate",
    "fit_flow",
    "recipe_for",
    "recipe_name",
]

_ADAPT_ROWS = 100_000  # streamed data: rows read to fit the standardisation


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the field and what was expected."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Everything that decides a training run. Keyword-only; every field has a default.

    Data:
      dataset: A built-in dataset (`tfp_realnvp.choices.BUILTIN_DATASETS`), `"csv:PATH"`,
        `"npy:PATH"` or `"tfrecord:PATH"`, PATH a file or a glob of shards (read in sorted order).
        Defaults to `"two_moons"`.
      num_train: Training rows: how many to draw for the toy sets, or the first `num_train` of
        the training split of digits and files. Defaults to `None` (the dataset's).
      num_test: Test rows, likewise. Defaults to `None`.
      header: CSV only: whether the first line names the columns. Defaults to `None`
        (detected).
      stream_above_mb: Files larger than this many MiB (shards: together) stream from disk
        through `tf.data`; TFRecord files always do. Defaults to 512.
      feature_key: TFRecord only: the `tf.train.Example` feature holding each row's floats.
        Defaults to `None`: the records' only float feature.
      event_shape: The shape each row takes in the flow, e.g. `[8, 8, 1]` for the 64 pixels
        of a digit. Defaults to `None`: rows are vectors.
      context_columns: For a conditional density `p(x | context)` of a CSV or NPY file: the
        columns that condition, by number counted from 1 or by header name; the other columns
        are `x`. Defaults to `None`.
      condition_on_label: For a conditional density of a dataset made of classes (two_moons:
        which moon; digits: the digit): condition on the one-hot class. Defaults to `False`.

    The flow:
      flow: A registered flow (`tfp_realnvp.register_flow`). Defaults to `"real_nvp"`.
      flow_options: The builder's options (for `"real_nvp"`: `num_couplings`, `hidden_units`,
        `log_scale_bound`, `permutation`, `activation`). Defaults to `{}`: the builder's
        defaults. The recipes spell theirs out.
      standardize: Fit a mean and standard deviation per entry on the training rows.
        Defaults to `True`.
      integer_levels: Integer data in `0..levels-1`: dequantize and report bits/dim.
        Defaults to `None`: the dataset's own (17 for digits), else continuous.
      logit_alpha: Real NVP's `logit(alpha + (1 - alpha) v)` of data scaled to `[0, 1)`.
        Defaults to `None`.
      flow_dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      whiten: Map the data by the training rows' mean and full covariance instead of the
        per-entry standardisation (vector events; `tfp_realnvp.bijectors.whitening`), so the
        fresh flow is their maximum-likelihood Gaussian; needs `standardize`. Defaults to
        `False`; the `file` recipe's table recipe chooses it (`tfp_realnvp.table_recipe`).

    Optimisation:
      epochs: Maximum epochs. Defaults to 60.
      batch_size: Rows per step. In memory, each epoch is cut into whole batches, reshuffled
        every epoch, and its last partial batch is left out (one shape to compile the step for).
        Defaults to 256.
      learning_rate: Adam's initial rate. Defaults to 2e-3.
      learning_rate_floor: The cosine decay ends at this fraction of `learning_rate`.
        Defaults to 0.
      warmup_epochs: Epochs of a linear warm-up from 0 before the decay. Defaults to 0.
      clipnorm: Clip gradients to this global norm. Defaults to `None`.
      weight_decay: Decoupled weight decay (AdamW) of the flow's weights, per unit learning rate.
        Defaults to 0 (Adam).
      validation_split: Fraction of the training rows held out for validation and early
        stopping; 0 monitors the training loss. Defaults to 0.1.
      patience: Stop after this many epochs without improvement and restore the best weights,
        the weights before the first epoch among the candidates; 0 turns early stopping off.
        Defaults to 10.
      jitter: Standard deviation of Gaussian noise added afresh to every training batch
        (noise regularisation, continuous data). Defaults to 0.
      restarts: Models trained, with seeds `seed * restarts + j`; the one with the lowest
        training NLL is kept. Defaults to 1.
      seed: Seed of the data, the flow's weights and random choices, and the shuffling.
        Defaults to 0.
      jit_compile: Compile the training step with XLA. Defaults to `None`: `FlowModel.compile`'s
        choice (TensorFlow's graph, measured faster here; the eager calls XLA-compiled either way).
      steps_per_execution: Steps per call of the compiled function. Defaults to `None`:
        `FlowModel.compile`'s (16 on one device).
      distribution: `"none"`, `"mirrored"` (this machine's GPUs) or `"multi_worker"` (the
        workers `TF_CONFIG` names): the `tf.distribute` strategy the run trains under
        (`tfp_realnvp.distribution`). `batch_size` stays the global batch. Defaults to `"none"`.
      adapt_to_table: The fields that `tfp_realnvp.table_recipe.adapt_to_table` still chooses
        from the table's rows and columns before the run (`fit_flow` and the command line call
        it); the `file` recipe lists them all, and a field changed through `for_dataset` or
        `replace` leaves the list. Defaults to `()`: nothing left to choose.

    Raises:
      ConfigError: For a value of the wrong type or out of range; the message names the field.

    Example:

    ```python
    config = TrainingConfig.for_dataset("digits", epochs=5)
    config.to_dict()["flow_options"]["permutation"]  # 'random'
    ```
    """

    dataset: str = "two_moons"
    num_train: int | None = None
    num_test: int | None = None
    header: bool | None = None
    stream_above_mb: float = 512.0
    feature_key: str | None = None
    event_shape: tuple[int, ...] | None = None
    context_columns: tuple[int | str, ...] | None = None
    condition_on_label: bool = False
    flow: str = "real_nvp"
    flow_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    standardize: bool = True
    integer_levels: int | None = None
    logit_alpha: float | None = None
    flow_dtype: str = "float32"
    epochs: int = 60
    batch_size: int = 256
    learning_rate: float = 2e-3
    learning_rate_floor: float = 0.0
    warmup_epochs: int = 0
    clipnorm: float | None = None
    validation_split: float = 0.1
    patience: int = 10
    jitter: float = 0.0
    restarts: int = 1
    seed: int = 0
    jit_compile: bool | None = None
    steps_per_execution: int | None = None
    distribution: str = "none"
    whiten: bool = False
    weight_decay: float = 0.0
    adapt_to_table: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(isinstance(self.dataset, str) and self.dataset, "dataset", "a dataset name or 'csv:PATH'", self.dataset)
        with checks.raising(ConfigError):
            self._check_types()
        _check(self.warmup_epochs < self.epochs, "warmup_epochs", f"fewer than epochs ({self.epochs})",
               self.warmup_epochs)
        _check(isinstance(self.flow, str) and self.flow, "flow", f"a registered flow such as {BUILTIN_FLOWS[0]!r}",
               self.flow)
        _check(isinstance(self.flow_options, Mapping), "flow_options", "a mapping of option names to values",
               self.flow_options)
        try:
            options = json.loads(json.dumps(dict(self.flow_options)))
        except (TypeError, ValueError) as error:
            raise ConfigError(f"flow_options must hold JSON values; {error}") from None
        object.__setattr__(self, "flow_options", options)

    def _check_types(self) -> None:
        """The integer, boolean and number fields, each kept as its Python type (numpy's converted)."""
        def keep(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("num_train", "num_test", "integer_levels", "steps_per_execution"):
            if getattr(self, name) is not None:
                keep(name, checks.integer(name, getattr(self, name), low=1))
        for name in ("epochs", "batch_size", "restarts"):
            keep(name, checks.integer(name, getattr(self, name), low=1))
        for name in ("warmup_epochs", "patience", "seed"):
            keep(name, checks.integer(name, getattr(self, name), low=0))
        for name in ("header", "jit_compile"):
            keep(name, checks.boolean(name, getattr(self, name), optional=True))
        for name in ("standardize", "whiten", "condition_on_label"):
            keep(name, checks.boolean(name, getattr(self, name)))
        _check(not self.whiten or self.standardize, "whiten", "false when standardize is false (whitening is a "
               "standardisation by the full covariance)", self.whiten)
        keep("weight_decay", checks.number("weight_decay", self.weight_decay, low=0))
        _check(isinstance(self.adapt_to_table, (list, tuple)) and all(
            isinstance(name, str) for name in self.adapt_to_table), "adapt_to_table", "a list of field names",
               self.adapt_to_table)
        keep("adapt_to_table", tuple(self.adapt_to_table))
        for name in ("stream_above_mb", "learning_rate"):
            keep(name, checks.number(name, getattr(self, name), positive=True))
        if self.clipnorm is not None:
            keep("clipnorm", checks.number("clipnorm", self.clipnorm, positive=True))
        for name in ("learning_rate_floor", "validation_split"):
            keep(name, checks.number(name, getattr(self, name), low=0, below=1))
        if self.logit_alpha is not None:
            keep("logit_alpha", checks.number("logit_alpha", self.logit_alpha, low=0, below=1))
        keep("jitter", checks.number("jitter", self.jitter, low=0))
        keep("flow_dtype", checks.dtype(self.flow_dtype, name="flow_dtype"))
        keep("distribution", checks.one_of("distribution", self.distribution, DISTRIBUTIONS))
        _check(self.feature_key is None or isinstance(self.feature_key, str) and self.feature_key, "feature_key",
               "the name of a TFRecord feature, or null", self.feature_key)
        if self.event_shape is not None:
            keep("event_shape", checks.event_shape(self.event_shape, example="[8, 8, 1]"))
        if self.context_columns is not None:
            columns = self.context_columns
            _check(isinstance(columns, (list, tuple)) and columns and all(
                checks.is_integer(c) and c >= 1 or (isinstance(c, str) and c) for c in columns), "context_columns",
                "a list of column numbers counted from 1 or column names, or null", columns)
            _check(len(set(columns)) == len(columns), "context_columns", "columns named once each", columns)
            _check(not self.condition_on_label, "context_columns", "null when condition_on_label is true", columns)
            keep("context_columns", tuple(int(c) if checks.is_integer(c) else c for c in columns))

    # -- building and saving --------------------------------------------------------------

    @classmethod
    def for_dataset(cls, dataset: str, **changes: Any) -> TrainingConfig:
        """The recipe of `dataset` (`RECIPES`; `"file"`'s for `csv:`/`npy:` data), then `changes`.

        A `flow_options` change is merged into the recipe's options (`{"num_couplings": 2}`
        changes only the couplings); every other change replaces the field. A change of
        `flow` drops the recipe's flow options, which belong to its own flow, and applies the
        recipe's settings for that flow if it has any (`recipe_for`).
        """
        recipe = recipe_for(dataset, changes.get("flow"))
        options = {**recipe.pop("flow_options", {}), **changes.get("flow_options", {})}
        recipe["adapt_to_table"] = _still_adaptive(recipe.get("adapt_to_table", ()), changes)
        changes.pop("flow_options", None)
        return cls(dataset=dataset, **{**recipe, **changes, "flow_options": options})

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with `changes`; as in `for_dataset`, `flow_options` changes are merged."""
        if self.adapt_to_table and "adapt_to_table" not in changes:
            changes["adapt_to_table"] = _still_adaptive(self.adapt_to_table, changes)
        if "flow_options" in changes:
            changes["flow_options"] = {**self.flow_options, **changes["flow_options"]}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, as JSON values (`from_dict` reads it back)."""
        values = dataclasses.asdict(self)
        for name in ("event_shape", "context_columns"):
            if values[name] is not None:
                values[name] = list(values[name])
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """A configuration from `to_dict`'s output; fields left out take their defaults.

        Raises:
          ConfigError: For a key that is not a field, or a bad value.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"a training configuration is a JSON object of fields; got {type(values).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(f"unknown configuration field(s) {', '.join(unknown)}; expected some of "
                              f"{', '.join(sorted(fields))}")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrainingConfig:
        """Reads a configuration saved as JSON, such as a run's `settings.json`.

        Raises:
          ConfigError: If the file is missing, is not JSON, or holds a bad configuration; the
            message names the file.
        """
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"no such configuration file: {path}") from None
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot read {path}: {error}; expected a JSON training configuration") from None
        try:
            return cls.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes `to_dict()` as JSON to `path`."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.to_dict(), indent=2) + "\n")


def _still_adaptive(adaptive: Sequence[str], changes: Mapping[str, Any]) -> tuple[str, ...]:
    """`adaptive` less the fields `changes` set (`flow_options.NAME` for a flow option); all of them
    for a change of dataset or flow, whose recipe the table recipe no longer describes."""
    if "dataset" in changes or "flow" in changes and changes["flow"] != "real_nvp":
        return ()
    given = set(changes) | {f"flow_options.{name}" for name in changes.get("flow_options", {})}
    if "standardize" in given:
        given.add("whiten")
    return tuple(name for name in adaptive if name not in given)


def _check(ok: Any, field: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{field} must be {expected}; got {value!r}")


def recipe_name(dataset: str) -> str:
    """The `RECIPES` key of a dataset: its own name, or `"file"` for `csv:`/`npy:` data and others."""
    return dataset if dataset in RECIPES else "file"


def recipe_for(dataset: str, flow: str | None = None) -> dict[str, Any]:
    """The fields the recipe of `dataset` sets for `flow` (a copy; `None`: the recipe's own flow).

    A recipe is its fields for its own flow, and under `"flows"` the fields that differ for
    other flows: `RECIPES["digits"]["flows"]["real_nvp_multiscale"]` holds the image model's
    event shape, flow options and optimisation. For a flow of its own, those fields replace the
    recipe's and its `flow_options` are the only ones; for a flow the recipe does not name, the
    recipe's fields stay but its flow options (its own flow's) are dropped.
    """
    recipe = dict(RECIPES[recipe_name(dataset)])
    per_flow = recipe.pop("flows", {})
    if flow is None or flow == recipe.get("flow"):
        return recipe
    recipe.pop("flow_options", None)
    return {**recipe, **per_flow.get(flow, {}), "flow": flow}


# Training recipes: per dataset, the fields that differ from TrainingConfig's defaults. Keys are
# the built-in datasets, and "file" for `csv:PATH` / `npy:PATH`. Each spells out its flow's
# options, so a run's settings.json does not change meaning when a builder's default does;
# "flows" holds the fields that differ for another flow (`recipe_for`).
TABLE_FIELDS = ("validation_split", "whiten", "flow_options.num_couplings", "flow_options.hidden_units",
                "batch_size", "epochs", "patience", "weight_decay")
"""The fields `tfp_realnvp.table_recipe` chooses from a table's rows and columns (the `file` recipe's)."""
_REAL_NVP = {"flow": "real_nvp", "flow_options": {
    "num_couplings": 8, "hidden_units": [128, 128], "log_scale_bound": "tanh", "permutation": "reverse"}}
RECIPES: dict[str, dict[str, Any]] = {
    # Tuned on two moons (benchmarks/two_moons_quality.py): raw coordinates fit better than
    # standardised ones (test NLL ~0.33 vs ~0.34), and batch 512 for 60 epochs beat batch 256 for
    # 40 (less overfitting of the 20 000 points, fewer steps).
    "two_moons": {**_REAL_NVP, "standardize": False, "batch_size": 512},
    "checkerboard": _REAL_NVP,
    "eight_gaussians": _REAL_NVP,
    "pinwheel": _REAL_NVP,
    # 1437 training images of 64 pixels: a random permutation mixes all pixels (a reversal only swaps
    # the two halves), and integer pixels 0..16 are dequantized, scaled to [0, 1] and logit-transformed.
    # The image model (`--flow real_nvp_multiscale`) sees each row as an 8x8x1 image: two scales (8x8,
    # then 4x4 after the squeeze), the paper's 3 + 3 + 4 couplings, residual networks of one block of 32
    # filters (208 k weights against real_nvp's 232 k). Chosen on the 144 validation images (bits/dim):
    # no per-pixel standardisation (1.99 against 2.04 with it; it breaks the images' translation
    # structure), no normalization between couplings (batch 2.05, act 2.01, none 1.99; standardised
    # 2.06, 2.06, 2.04), rate 1e-3 (2e-3: 2.07), 32 filters in one block (36: 2.08, 24 in two: 2.09,
    # standardised). The test figures: benchmarks/DIGITS.md.
    "digits": {
        "flow": "real_nvp", "flow_options": {**_REAL_NVP["flow_options"], "permutation": "random"},
        "integer_levels": 17, "logit_alpha": 0.05, "clipnorm": 1.0, "epochs": 100, "batch_size": 128,
        "learning_rate": 1e-3, "patience": 15,
        "flows": {"real_nvp_multiscale": {"event_shape": [8, 8, 1], "standardize": False, "flow_options": {
            "num_scales": 2, "num_filters": 32, "num_blocks": 1, "num_checkerboard_couplings": 3,
            "num_channel_couplings": 3, "num_final_couplings": 4, "normalization": "none",
            "log_scale_bound": "tanh"}}},
    },
    # Your own table: the fields of TABLE_FIELDS are chosen from its rows and columns (table_recipe.py).
    "file": {**_REAL_NVP, "epochs": 100, "learning_rate": 1e-3, "adapt_to_table": TABLE_FIELDS},
}


# -- fitting ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class TrainingResult:
    """What `fit_flow` returns.

    Attributes:
      model: The trained `FlowModel` (the kept restart), with the best weights when early
        stopping restored them.
      config: The configuration run, with `integer_levels` filled in from the data.
      data: The `Dataset` trained on.
      history: Keras's per-epoch logs of the kept model (`loss`, `nll`, `val_loss`, ...).
      metrics: `{"train": ..., "validation": ..., "test": ...}`, each `{"rows": n, "nll":
        nats}` (and `"bits_per_dim"` for integer data); no `"validation"` without a split.
      epochs_run: Epochs the kept model trained.
      best_epoch: The epoch with the lowest monitored loss (1-based), or None if none was finite.
      stopped_early: Whether early stopping ended the training before `epochs`.
      training_seconds: Time in `fit`, all restarts together, in this process (a resumed run
        counts its own).
      candidates: Per restart, its seed and training and test NLL (one entry without restarts).
      chief: Whether this process is the one that writes the run's files: false only on a
        multi-worker job's other workers (`tfp_realnvp.distribution.is_chief`).
    """

    model: FlowModel
    config: TrainingConfig
    data: Dataset
    history: dict[str, list[float]]
    metrics: dict[str, dict[str, Any]]
    epochs_run: int
    best_epoch: int | None
    stopped_early: bool
    training_seconds: float
    candidates: list[dict[str, Any]]
    chief: bool = True

    @property
    def monitor(self) -> str:
        """The loss early stopping watched: `val_loss`, or `loss` without a validation split."""
        return _monitor(self.config)


def fit_flow(
    config: TrainingConfig,
    *,
    data: Dataset | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
    backup_dir: str | os.PathLike[str] | None = None,
) -> TrainingResult:
    """Loads the data, builds a `FlowModel`, fits it and evaluates it, as `config` says.

    With `backup_dir`, the run can be killed at any moment and resumed by calling `fit_flow`
    again with the same configuration and `backup_dir`: every epoch ends with a backup
    (`tfp_realnvp.backup.TrainingBackup`: the weights, the optimizer and its iteration count,
    which drives the learning-rate schedule, early stopping's state and the history), and each
    finished restart leaves its weights and figures there, so a resumed run loses at most the
    epoch in progress and trains no finished restart again. The history it returns is the whole
    run's. The resumed epochs see their data in another order than they would have (the data
    pipeline starts afresh), so the result matches an uninterrupted run to seed noise, not bit
    for bit. `backup_dir` is removed when `fit_flow` returns.

    Under `config.distribution` (`tfp_realnvp.distribution`), the model is built, adapted and
    compiled in the strategy's scope and `batch_size` rows are split across its replicas per
    step. In a multi-worker job every worker calls `fit_flow` with the same configuration (and
    `backup_dir`, which all must read): they train in lockstep, all evaluate, and only the chief
    writes or removes the backup; `TrainingResult.chief` tells a caller whether to write the
    results.

    Args:
      config: The run.
      data: The data to use instead of loading `config.dataset` (its `name` should still be
        the dataset's). Defaults to `None`.
      callbacks: Keras callbacks added to the recipe's (NaN termination, early stopping, a
        notice while XLA compiles the first step). Defaults to none.
      verbose: Keras's `verbose` for `fit`: 1 a progress bar, 2 a line per epoch, 0 silent.
        Defaults to `"auto"` (1).
      backup_dir: A directory for the backup of this run only. Defaults to `None`: no backup.

    Returns:
      A `TrainingResult`.

    Each restart first calls `keras.utils.set_random_seed` with its seed (Python's, numpy's and
    TensorFlow's global generators: the shuffling order), as a Keras script would.

    Raises:
      ConfigError: If the flow cannot be built from the configuration, or the validation split
        leaves no training or no validation row.
      DataError: If the data cannot be loaded, do not fit the flow's preprocessing, or a
        streamed file turns out malformed while it is read.
    """
    from tfp_realnvp import distribution  # pylint: disable=import-outside-toplevel

    # First: a multi-worker job's collectives and a mirrored run's logical CPUs are set up before TensorFlow runs.
    strategy = distribution.strategy(config.distribution)
    chief = distribution.is_chief(strategy)

    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.backup import TrainingBackup  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.callbacks import CompileNotice, EarlyStoppingFromStart  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.data import DataError, stream_error  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.examples import Examples, load_data  # pylint: disable=import-outside-toplevel

    if data is None:
        data = load_data(config)
    if config.adapt_to_table:
        from tfp_realnvp.table_recipe import adapt_to_table  # pylint: disable=import-outside-toplevel

        config, why = adapt_to_table(config, data)
        if verbose:
            print(why, flush=True)
    if config.integer_levels is None and data.integer_levels is not None:
        config = config.replace(integer_levels=data.integer_levels)
    # The event shape and a context the data cannot give fail here, before anything runs.
    examples = Examples(config, data)
    n, split = data.num_train, config.validation_split
    n_fit, n_val = examples.num_fit, examples.num_validation
    if split and not 0 < n_fit < n:
        raise ConfigError(
            f"validation_split {split:g} of the {n} training rows of {data.name} leaves {n_val} validation "
            f"and {n_fit} training rows; expected at least one of each (use more data, another split, or 0)"
        )
    # In memory, the fitting batches are whole, shuffled afresh each epoch: an epoch's last,
    # partial batch is dropped (other rows each epoch, so every row is trained on), because a
    # partial batch is one more shape for XLA to compile the training step for, seconds on CPU,
    # most of the first epoch of a small job. Streamed, the last batch may be partial.
    whole_batches = not data.streamed
    validation = examples.pipeline("validation") if n_val else None
    stream_errors: tuple[type[Exception], ...] = (tf.errors.InvalidArgumentError,) if data.streamed else ()

    backup = None if backup_dir is None else pathlib.Path(backup_dir)
    candidates, kept, seconds = [], None, 0.0
    for j in range(config.restarts):
        seed = config.seed * config.restarts + j
        keras.utils.set_random_seed(seed)  # the shuffling order: the same on every worker
        with strategy.scope():  # the weights (mirrored on each replica), the statistics, the optimizer
            model = _build_model(config, examples, seed)
            try:
                # The standardisation is fitted on the fitted rows only, streamed in one pass (whitened:
                # the first 100 000, whose covariance is computed in memory).
                model.adapt(examples.pipeline("fit", limit=_ADAPT_ROWS if data.streamed and config.whiten else None))
            except stream_errors as error:
                raise stream_error(error) from None
            except ValueError as error:
                raise DataError(f"training data of {data.name} do not fit the flow: {error}") from None
        if j == 0 and not data.streamed:  # the preprocessing's range does not depend on the seed
            # adapt() checked the fitted rows; fit's own checks do not see a tf.data pipeline, so
            # the validation rows (the training split's last) are checked here with the test split.
            for split in ("train", "test"):
                try:
                    model.preprocessing.check(examples.arrays(split)[0])
                except ValueError as error:
                    what = "training" if split == "train" else split
                    raise DataError(f"{what} data of {data.name} do not fit the flow: {error}") from None
        fit_rows = examples.pipeline("fit", batch_size=config.batch_size, shuffle=True, seed=seed,
                                     drop_remainder=whole_batches)
        with strategy.scope():
            _compile(model, config, int(fit_rows.cardinality()))
        finished = _finished_restart(backup, j, config.restarts)
        if finished is not None:  # a resumed run: this restart ended before the interruption
            model.optimizer.build(model.trainable_variables)  # the saved weights hold the optimizer's too
            model.load_weights(backup / finished["weights"])
            losses, train, test = finished["history"], finished["train"], finished["test"]
        else:
            fit_callbacks: list[Any] = [keras.callbacks.TerminateOnNaN()]
            stop = None
            if config.patience > 0:
                # The start is a candidate: a whitened fresh flow is the data's Gaussian, kept if no epoch beats it.
                start = evaluate(model, validation if validation is not None else examples.pipeline("fit"),
                                 None)["nll"]
                stop = EarlyStoppingFromStart(start=start, monitor=_monitor(config), patience=config.patience)
                fit_callbacks.append(stop)
            saver = None
            if backup is not None:  # after early stopping, whose state it keeps
                saver = TrainingBackup(_restart_dir(backup, j, config.restarts), early_stopping=stop)
                fit_callbacks.append(saver)
            if verbose:
                fit_callbacks.append(CompileNotice())
            started = time.perf_counter()
            try:
                history = model.fit(_jittered(fit_rows, config.jitter), epochs=config.epochs, verbose=verbose,
                                    validation_data=validation, shuffle=False,  # shuffled by the pipeline
                                    callbacks=[*fit_callbacks, *callbacks])
                seconds += time.perf_counter() - started
                train = evaluate(model, examples.pipeline("fit"), n_fit)
                test = evaluate(model, examples.pipeline("test"), data.num_test)
            except stream_errors as error:
                raise stream_error(error) from None
            losses = saver.history if saver is not None else {
                k: [float(v) for v in values] for k, values in history.history.items()}
            kept_start = stop is not None and stop.best_epoch == -1
            if backup is not None and config.restarts > 1 and chief:
                _save_finished_restart(model, backup, j, {"history": losses, "train": train, "test": test,
                                                          "kept_start": kept_start})
        candidates.append({"seed": seed, "train_nll": train["nll"], "test_nll": test["nll"],
                           "kept_start": kept_start if finished is None else finished.get("kept_start", False)})
        # The lowest training NLL; a diverged (NaN) candidate never beats a finite one.
        if kept is None or not math.isfinite(kept[2]["nll"]) or train["nll"] < kept[2]["nll"]:
            kept = (model, losses, train, test, candidates[-1]["kept_start"])
    model, losses, train, test, kept_start = kept
    try:
        metrics = {"train": train}
        if validation is not None:
            metrics["validation"] = evaluate(model, validation, n_val)
        metrics["test"] = test
        gaussian = _gaussian_validation(config, data, examples, n_val)
        if gaussian is not None:
            metrics["gaussian"] = gaussian
    except stream_errors as error:
        raise stream_error(error) from None
    if backup is not None and chief:
        shutil.rmtree(backup, ignore_errors=True)
    epochs_run = len(losses.get("loss", []))
    return TrainingResult(
        model=model, config=config, data=data, history=losses, metrics=metrics, epochs_run=epochs_run,
        best_epoch=0 if kept_start else best_epoch(losses.get(_monitor(config), [])),
        stopped_early=epochs_run < config.epochs, training_seconds=seconds, candidates=candidates, chief=chief,
    )


def _gaussian_validation(config: TrainingConfig, data: Dataset, examples: Examples,
                         n_val: int) -> dict[str, Any] | None:
    """The validation NLL of the full-covariance Gaussian fitted on the training rows, in data space:
    what the flow is measured against. Only for your own data (`csv:`/`npy:`); None without a
    validation split in memory, for integer data or a conditional run, or where the rows have no
    such Gaussian (`fit_gaussian`'s refusals)."""
    from tfp_realnvp.bijectors.whitening import gaussian_nll  # pylint: disable=import-outside-toplevel

    if (recipe_name(config.dataset) != "file" or not n_val or data.streamed or config.integer_levels is not None
            or examples.context_size):
        return None
    fit, val = examples.arrays("fit")[0], examples.arrays("validation")[0]
    try:
        return {"rows": n_val, "nll": gaussian_nll(fit.reshape(len(fit), -1), val.reshape(len(val), -1))}
    except ValueError:
        return None


def _monitor(config: TrainingConfig) -> str:
    return "val_loss" if config.validation_split else "loss"


def _restart_dir(backup: pathlib.Path, j: int, restarts: int) -> pathlib.Path:
    """Where restart `j` keeps its TrainingBackup: the backup directory itself without restarts."""
    return backup if restarts == 1 else backup / f"restart-{j}"


def _finished_restart(backup: pathlib.Path | None, j: int, restarts: int) -> dict[str, Any] | None:
    """What a finished restart left in the backup (`_save_finished_restart`), or None."""
    if backup is None or restarts == 1:
        return None
    path = backup / f"restart-{j}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _save_finished_restart(model: FlowModel, backup: pathlib.Path, j: int, record: dict[str, Any]) -> None:
    """Keeps a finished restart's final weights and figures, then drops its epoch backup."""
    from tfp_realnvp import files  # pylint: disable=import-outside-toplevel

    weights = f"restart-{j}.weights.h5"
    files.replace(backup / weights, lambda path: model.save_weights(path, overwrite=True))
    files.replace(backup / f"restart-{j}.json",  # the commit
                  lambda path: path.write_text(json.dumps({**record, "weights": weights}) + "\n"))
    shutil.rmtree(_restart_dir(backup, j, 2), ignore_errors=True)


def best_epoch(values: Sequence[float]) -> int | None:
    """The 1-based epoch of the lowest finite value (the first, on ties); `None` if none is finite.

    The epoch `keras.callbacks.EarlyStopping(restore_best_weights=True)` keeps.
    """
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    return min(finite)[1] + 1 if finite else None


def _build_model(config: TrainingConfig, examples: Examples, seed: int) -> FlowModel:
    from tfp_realnvp.model import FlowModel  # pylint: disable=import-outside-toplevel

    try:
        return FlowModel(
            event_shape=examples.event_shape, flow=config.flow, seed=seed, standardize=config.standardize,
            context_size=examples.context_size,
            integer_levels=config.integer_levels, logit_alpha=config.logit_alpha, flow_dtype=config.flow_dtype,
            **({"whiten": True} if config.whiten else {}), **config.flow_options,
        )
    except (ValueError, TypeError) as error:
        raise ConfigError(f"cannot build the flow: {error}") from None


def _compile(model: FlowModel, config: TrainingConfig, steps_per_epoch: int) -> None:
    import keras  # pylint: disable=import-outside-toplevel

    total, warmup = config.epochs * steps_per_epoch, config.warmup_epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else config.learning_rate, decay_steps=total - warmup, alpha=config.learning_rate_floor,
        warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup,
    )
    kwargs: dict[str, Any] = {}
    if config.jit_compile is not None:
        kwargs["jit_compile"] = config.jit_compile
    if config.steps_per_execution is not None:
        kwargs["steps_per_execution"] = config.steps_per_execution
    optimizer = (keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, global_clipnorm=config.clipnorm)
                 if config.weight_decay else keras.optimizers.Adam(schedule, global_clipnorm=config.clipnorm))
    model.compile(optimizer=optimizer, **kwargs)


def _jittered(batches: Any, jitter: float) -> Any:
    """`batches` with fresh N(0, jitter^2) noise added to every batch's `x` (none for `jitter` 0)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if not jitter:
        return batches

    def jitter_x(x: Any) -> Any:
        return x + tf.cast(jitter, x.dtype) * tf.random.normal(tf.shape(x), dtype=x.dtype)

    return batches.map(lambda batch: {**batch, "x": jitter_x(batch["x"])} if isinstance(batch, dict)
                       else jitter_x(batch)).prefetch(tf.data.AUTOTUNE)


def evaluate(model: FlowModel, inputs: Any, rows: int | None) -> dict[str, Any]:
    """The mean NLL (and bits/dim) of `model` on `inputs`, via `model.evaluate`.

    Args:
      model: A `FlowModel`.
      inputs: Examples (an array, or a dict `{"x", "context"}` of arrays) or a batched
        `tf.data.Dataset` of them, such as `Examples.pipeline` gives.
      rows: The number of examples, reported beside the figures.

    Returns:
      `{"rows": rows, "nll": nats}`, and `"bits_per_dim"` for integer data.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.examples import EVAL_BATCH  # pylint: disable=import-outside-toplevel

    batch = {} if isinstance(inputs, tf.data.Dataset) else {"batch_size": EVAL_BATCH}
    logs = model.evaluate(inputs, verbose=0, return_dict=True, **batch)
    out: dict[str, Any] = {"rows": rows, "nll": float(logs["nll"])}
    if "bits_per_dim" in logs:
        out["bits_per_dim"] = float(logs["bits_per_dim"])
    return out
