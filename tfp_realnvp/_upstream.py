"""Every private part of TensorFlow, TFP and Keras this package relies on, in one table.

A saved model stops loading, or training silently changes, when an upgrade moves something
private that a package leaned on (BayesFlow's users' most frequent complaint). Each row below
names one such thing, where the package uses it, and why; `tests/test_upstream.py` checks each
one exists with the signature or behaviour used here, so an upgrade that changes it fails a test
named after the row instead of a user's model. `pyproject.toml` pins the versions these checks
passed on.

What counts as private: a name with a leading underscore on a TensorFlow, TFP or Keras object
(`model._initial_epoch`, `BackupAndRestore._save_model`), anything imported from an internal
module path (`tensorflow_probability.python.internal`, `tensorflow.python`, `keras.src`), and
undocumented attributes whose meaning is read from the source (`EarlyStopping.best_epoch`).

What does not: the hooks TFP documents for subclassing `tfb.Bijector` (its class docstring
lists `_forward`, `_inverse`, `_forward_log_det_jacobian`, `_inverse_log_det_jacobian`,
`_parameter_properties` and the `_..._event_shape[_tensor]` methods) and Keras's documented
`Model` overrides (`train_step`, `test_step`, `compute_loss`, `compute_metrics`). They are API;
`SUBCLASSING_HOOKS` names the TFP ones anyway, and the test checks TFP still calls them, as
they are where a TFP upgrade would hurt first.

A new private use is added here, with a check, in the same change; the test also fails on an
internal import or an overridden private upstream method that this table does not list.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "PRIVATE",
    "Private",
    "SUBCLASSING_HOOKS",
]


@dataclasses.dataclass(frozen=True)
class Private:
    """One private thing of an upstream library, where this package uses it, and why."""

    name: str
    used_in: tuple[str, ...]
    why: str


PRIVATE: tuple[Private, ...] = (
    # -- TensorFlow Probability ----------------------------------------------------------------
    Private("tensorflow_probability.python.internal.cache_util.BijectorCacheWithGreedyAttrs",
            ("bijectors/affine_coupling.py", "bijectors/channels.py", "bijectors/factor_out.py"),
            "a bijector's `_cache` class attribute with forward_name/inverse_name: one pass computes the output "
            "and its log-det, which TFP's cache keeps for the log-det methods (tfb.FFJORD's pattern)"),
    Private("tensorflow_probability.python.bijectors.bijector.Bijector._cache",
            ("bijectors/affine_coupling.py", "bijectors/channels.py", "bijectors/factor_out.py"),
            "the class attribute the cache above replaces"),
    Private("tensorflow_probability.python.bijectors.invert._Invert",
            ("routing.py",),
            "tfb.Invert of a bijector that is not a CompositeTensor (ours hold Keras layers) is an _Invert, "
            "which tfb.Invert subclasses: routing recognises inverted bijectors by it"),
    # -- TensorFlow ------------------------------------------------------------------------------
    Private("tf.distribute.StrategyExtended._in_multi_worker_mode",
            ("model.py",),
            "whether Keras's multi-worker fit runs, whose scalar logs fail (keras#20585)"),
    Private("tensorflow.python.tools.saved_model_cli",
            ("serving_check/__init__.py",),
            "run as `python -m` to load an export with TF 1's session loader, as TF Serving's tools do"),
    Private("tensorflow.python.framework.convert_to_constants.convert_variables_to_constants_v2",
            ("export/graphs.py",),
            "freezes a signature's variables into constants, the graph ONNX and LiteRT convert (TF's own "
            "converters call it; no public name exists)"),
    Private("tensorflow.python.grappler.tf_optimizer.OptimizeGraph",
            ("export/graphs.py",),
            "Grappler's constant folding on the frozen graph: folds the constant log-dets the LiteRT converter "
            "otherwise cuts to their first element"),
    Private("tf.Module attributes named _self_*",
            ("tracking.py",),
            "tf.Module's own bookkeeping, which lists the other attributes again: skipped when searching a "
            "bijector's attributes for Keras layers"),
    # -- Keras -----------------------------------------------------------------------------------
    Private("keras.Model._compile_config",
            ("model.py",),
            "compile()'s saved arguments: jit_compile='auto' is written back so a model reloads as 'auto'"),
    Private("keras.Model._initial_epoch",
            ("backup.py",),
            "fit() starts from it (`self._initial_epoch or initial_epoch`): set by a resumed backup"),
    Private("keras.callbacks.BackupAndRestore._load_model",
            ("backup.py",),
            "the hook on_train_begin calls to restore a backup; TrainingBackup's own format overrides it"),
    Private("keras.callbacks.BackupAndRestore._save_model",
            ("backup.py",),
            "the hook on_epoch_end calls to write a backup; overridden likewise"),
    Private("keras.callbacks.BackupAndRestore._current_epoch",
            ("backup.py",),
            "the epoch count BackupAndRestore keeps and on_epoch_end advances"),
    Private("keras.callbacks.ProgbarLogger._update_progbar",
            ("callbacks.py",),
            "overridden (batch, logs) so the bar never counts past the epoch's steps; with `target`"),
    Private("keras.callbacks.EarlyStopping.wait/stopped_epoch/best/best_epoch/best_weights",
            ("backup.py",),
            "early stopping's state, undocumented attributes, kept in the backup so a resumed run stops "
            "where it would have"),
    Private("keras.Model.make_test_function(force)/make_predict_function(force)",
            ("model.py",),
            "undocumented trainer methods, overridden to compile evaluation with or without XLA"),
    # -- Python ----------------------------------------------------------------------------------
    Private("module.__spec__._initializing",
            ("__init__.py",),
            "whether one of this package's modules is being imported (Keras classes are registered after)"),
)
"""The table: one row per private thing, checked by `tests/test_upstream.py`."""

SUBCLASSING_HOOKS: tuple[str, ...] = (
    "_forward", "_inverse", "_forward_log_det_jacobian", "_inverse_log_det_jacobian", "_parameter_properties",
    "_forward_event_shape", "_inverse_event_shape", "_forward_event_shape_tensor", "_inverse_event_shape_tensor",
)
"""TFP's documented `tfb.Bijector` subclassing hooks that this package's bijectors implement."""
