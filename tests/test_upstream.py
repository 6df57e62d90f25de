"""The private parts of TF, TFP and Keras in tfp_realnvp/_upstream.py: each still there, as used.

An upgrade that removes or changes one fails its row's test here, named after it, rather than a
user's saved model or a silent change in training. The table is also complete: an internal import
or an overridden private upstream method it does not list fails `test_the_table_is_complete`.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pathlib
import pkgutil
import re
import sys
from importlib.metadata import version

import keras
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from packaging.requirements import Requirement

import tfp_realnvp
from tfp_realnvp._upstream import PRIVATE, SUBCLASSING_HOOKS

PACKAGE = pathlib.Path(tfp_realnvp.__file__).resolve().parent


def _params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def _cache_util() -> None:
    from tensorflow_probability.python.internal import cache_util

    assert {"forward_name", "inverse_name"} <= set(_params(cache_util.BijectorCacheWithGreedyAttrs))


def _bijector_cache() -> None:
    from tensorflow_probability.python.internal import cache_util

    assert isinstance(tfp.bijectors.Bijector._cache, cache_util.BijectorCache)
    assert issubclass(cache_util.BijectorCacheWithGreedyAttrs, type(tfp.bijectors.Bijector._cache))


def _invert() -> None:
    from tensorflow_probability.python.bijectors import invert

    assert issubclass(tfp.bijectors.Invert, invert._Invert)  # pylint: disable=protected-access


def _multi_worker_mode() -> None:
    assert tf.distribute.get_strategy().extended._in_multi_worker_mode() is False  # pylint: disable=protected-access


def _saved_model_cli() -> None:
    assert importlib.util.find_spec("tensorflow.python.tools.saved_model_cli") is not None


def _convert_to_constants() -> None:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    v = tf.Variable(2.0)
    concrete = tf.function(lambda x: x * v).get_concrete_function(tf.TensorSpec([], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    assert not frozen.graph.variables and float(frozen(tf.constant(3.0))[0]) == 6.0


def _optimize_graph() -> None:
    from tensorflow.python.grappler import tf_optimizer

    assert _params(tf_optimizer.OptimizeGraph)[:2] == ["config_proto", "metagraph"]


def _module_bookkeeping() -> None:
    module = tf.Module()
    module.layers = [keras.layers.Dense(1)]  # a tracked attribute: tf.Module lists it again under _self_*
    assert "_self_unconditional_checkpoint_dependencies" in vars(module)


def _compile_config() -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(jit_compile=False)
    assert model._compile_config.config["jit_compile"] is False  # pylint: disable=protected-access


def _initial_epoch() -> None:
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    assert "self._initial_epoch" in inspect.getsource(TensorFlowTrainer.fit)


def _backup_hook(hook: str, caller: str):
    def check() -> None:
        backup = keras.callbacks.BackupAndRestore
        assert _params(getattr(backup, hook)) == ["self"]
        assert f"self.{hook}()" in inspect.getsource(getattr(backup, caller))

    return check


def _current_epoch() -> None:
    assert "self._current_epoch" in inspect.getsource(keras.callbacks.BackupAndRestore.on_epoch_end)


def _update_progbar() -> None:
    assert _params(keras.callbacks.ProgbarLogger._update_progbar) == ["self", "batch", "logs"]
    assert keras.callbacks.ProgbarLogger().target is None


def _early_stopping_state() -> None:
    stop = keras.callbacks.EarlyStopping()
    stop.on_train_begin()
    for name in ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"):
        assert hasattr(stop, name), name


def _make_functions() -> None:
    for name in ("make_test_function", "make_predict_function"):
        assert _params(getattr(keras.Model, name)) == ["self", "force"], name


def _spec_initializing(tmp_path, monkeypatch) -> None:
    (tmp_path / "probe_initializing.py").write_text("import sys\nSEEN = __spec__._initializing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.import_module("probe_initializing").SEEN is True
    sys.modules.pop("probe_initializing")


CHECKS = {
    "tensorflow_probability.python.internal.cache_util.BijectorCacheWithGreedyAttrs": _cache_util,
    "tensorflow_probability.python.bijectors.bijector.Bijector._cache": _bijector_cache,
    "tensorflow_probability.python.bijectors.invert._Invert": _invert,
    "tf.distribute.StrategyExtended._in_multi_worker_mode": _multi_worker_mode,
    "tensorflow.python.tools.saved_model_cli": _saved_model_cli,
    "tensorflow.python.framework.convert_to_constants.convert_variables_to_constants_v2": _convert_to_constants,
    "tensorflow.python.grappler.tf_optimizer.OptimizeGraph": _optimize_graph,
    "tf.Module attributes named _self_*": _module_bookkeeping,
    "keras.Model._compile_config": _compile_config,
    "keras.Model._initial_epoch": _initial_epoch,
    "keras.callbacks.BackupAndRestore._load_model": _backup_hook("_load_model", "on_train_begin"),
    "keras.callbacks.BackupAndRestore._save_model": _backup_hook("_save_model", "on_epoch_end"),
    "keras.callbacks.BackupAndRestore._current_epoch": _current_epoch,
    "keras.callbacks.ProgbarLogger._update_progbar": _update_progbar,
    "keras.callbacks.EarlyStopping.wait/stopped_epoch/best/best_epoch/best_weights": _early_stopping_state,
    "keras.Model.make_test_function(force)/make_predict_function(force)": _make_functions,
    "module.__spec__._initializing": _spec_initializing,
}


def test_every_row_has_its_check():
    assert sorted(CHECKS) == sorted(row.name for row in PRIVATE)


@pytest.mark.parametrize("name", [row.name for row in PRIVATE])
def test_the_private_part_is_still_there(name, tmp_path, monkeypatch):
    check = CHECKS[name]
    check(*(dict(tmp_path=tmp_path, monkeypatch=monkeypatch)[p] for p in _params(check)))


def test_tfp_still_calls_the_subclassing_hooks():
    from tensorflow_probability.python.bijectors import bijector

    source = inspect.getsource(bijector)
    missing = [hook for hook in SUBCLASSING_HOOKS if f"self.{hook}" not in source and f"cls.{hook}" not in source]
    assert not missing, f"tfb.Bijector no longer calls {missing}"


def _upstream(cls: type) -> list[type]:
    return [b for b in cls.__mro__[1:] if not b.__module__.startswith(("tfp_realnvp", "typing", "builtins", "abc"))]


def test_the_table_is_complete():
    names = [row.name for row in PRIVATE]
    # Internal module paths: imported (`from X import Y` as X.Y), or named in a string (`python -m X`).
    internal = re.compile(r"(?:tensorflow_probability\.python|tensorflow\.python|keras\.src)(?:\.\w+)*")
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_upstream.py":
            continue
        used = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                used |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                used |= {alias.name for alias in node.names}
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "\n" not in node.value:
                used |= set(internal.findall(node.value))  # one-line strings, not docstrings
        for name in sorted(u for u in used if internal.fullmatch(u)):
            assert any(row.startswith(name) for row in names), f"{path.name} uses {name}, not in _upstream.py"
    # Private upstream methods and class attributes that the package's classes override.
    unlisted = set()
    for info in pkgutil.walk_packages(tfp_realnvp.__path__, "tfp_realnvp."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            for attr in cls.__dict__:
                if not attr.startswith("_") or attr.startswith("__") or attr in SUBCLASSING_HOOKS + ("_abc_impl",):
                    continue
                owner = next((b for b in _upstream(cls) if attr in b.__dict__), None)
                if owner is not None and not any(f"{owner.__name__}.{attr}" in name for name in names):
                    unlisted.add(f"{cls.__name__}.{attr} overrides {owner.__module__}.{owner.__name__}")
    assert not unlisted, f"private upstream overrides not in _upstream.py: {sorted(unlisted)}"


def test_runtime_dependencies_are_pinned_to_the_tested_range():
    # A saved model survives upgrades only if an upgrade is deliberate: every runtime dependency
    # has an upper bound, and the versions installed here (those the suite tests) are inside it.
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        assert any(spec.operator == "<" for spec in requirement.specifier), f"{line} has no upper bound"
        assert requirement.specifier.contains(version(requirement.name)), (line, version(requirement.name))
