"""tfp_realnvp: Real NVP normalizing flows as TensorFlow Probability bijectors and distributions.

The public names below are imported from their modules on first use (PEP 562), so that
`import tfp_realnvp`, and the command line's `--help`, do not pay TensorFlow's import (about 8 s).
The package's Keras classes (`FlowModel` and the layers it saves) are registered with Keras as
soon as Keras itself is imported, before or after this package, so
`keras.models.load_model("m.keras")` finds them after a plain `import tfp_realnvp`.
`import tfp_realnvp` sets no environment variables.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "ActNorm": "tfp_realnvp.bijectors.act_norm",
    "AffineCoupling": "tfp_realnvp.bijectors.affine_coupling",
    "BatchNormalization": "tfp_realnvp.bijectors.batch_normalization",
    "ConfigError": "tfp_realnvp.training",
    "Coupling": "tfp_realnvp.bijectors.coupling",
    "EarlyStoppingFromStart": "tfp_realnvp.callbacks",
    "FactorOut": "tfp_realnvp.bijectors.factor_out",
    "FlowModel": "tfp_realnvp.model",
    "HoldsConditionKeys": "tfp_realnvp.routing",
    "HoldsKerasLayers": "tfp_realnvp.tracking",
    "LOG_SCALE_BOUNDS": "tfp_realnvp.choices",
    "LUMixing": "tfp_realnvp.bijectors.mixing",
    "MLPConditioner": "tfp_realnvp.conditioners.mlp",
    "PERMUTATIONS": "tfp_realnvp.choices",
    "Preprocessing": "tfp_realnvp.bijectors.preprocessing",
    "RECIPES": "tfp_realnvp.training",
    "ResNetConditioner": "tfp_realnvp.conditioners.resnet",
    "SplineCoupling": "tfp_realnvp.bijectors.spline_coupling",
    "Squeeze": "tfp_realnvp.bijectors.squeeze",
    "TanhLogScale": "tfp_realnvp.bounds",
    "TrainingBackup": "tfp_realnvp.backup",
    "TrainingConfig": "tfp_realnvp.training",
    "TrainingResult": "tfp_realnvp.training",
    "Whitening": "tfp_realnvp.bijectors.whitening",
    "adapt_to_table": "tfp_realnvp.table_recipe",
    "channel_mask": "tfp_realnvp.masks",
    "checkerboard_mask": "tfp_realnvp.masks",
    "coupling_layers": "tfp_realnvp.flows.real_nvp",
    "export_litert": "tfp_realnvp.export",
    "export_onnx": "tfp_realnvp.export",
    "export_saved_model": "tfp_realnvp.export",
    "fit_gaussian": "tfp_realnvp.bijectors.whitening",
    "fit_flow": "tfp_realnvp.training",
    "keras_layers": "tfp_realnvp.tracking",
    "permutation_indices": "tfp_realnvp.flows.real_nvp",
    "real_nvp": "tfp_realnvp.flows.real_nvp",
    "real_nvp_multiscale": "tfp_realnvp.flows.multiscale",
    "register_flow": "tfp_realnvp.flows.registry",
    "registered_flows": "tfp_realnvp.flows.registry",
    "route": "tfp_realnvp.routing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfp_realnvp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    if "keras" in sys.modules:
        _register_keras_classes()
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# -- Keras registration --------------------------------------------------------------------
# keras.models.load_model finds a custom class only once its module has run its
# @register_keras_serializable decorator. These modules hold every such class.
_KERAS_CLASS_MODULES = ("tfp_realnvp.model", "tfp_realnvp.flows")


def _importing_this_package() -> bool:
    """Whether one of this package's modules is being executed (its import is under way)."""
    return any(
        name.startswith("tfp_realnvp.") and getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
    )


def _register_keras_classes() -> None:
    # Inside an import of one of our own modules (which imported Keras first), importing the
    # others now could meet that module half-executed; whoever imports it finishes the job.
    if _importing_this_package() or all(name in sys.modules for name in _KERAS_CLASS_MODULES):
        return
    try:
        for name in _KERAS_CLASS_MODULES:
            importlib.import_module(name)
    except Exception as error:  # never break the user's `import keras` over it
        warnings.warn(
            f"tfp_realnvp could not register its Keras classes ({type(error).__name__}: {error}); "
            "import tfp_realnvp.model before keras.models.load_model",
            stacklevel=2,
        )


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs `_register_keras_classes` right after the module `keras` has been executed.

    It finds `keras` through the other finders and wraps the loader's `exec_module`, then
    puts the original loader back; a lookup that does not import (`importlib.util.find_spec`)
    changes nothing.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "keras":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader, self)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, finder: _AfterKerasImport) -> None:
        self._loader, self._finder = loader, finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__spec__.loader = module.__loader__ = self._loader
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _register_keras_classes()


if "keras" in sys.modules:
    _register_keras_classes()
elif not any(isinstance(finder, _AfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())
