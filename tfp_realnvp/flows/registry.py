"""Flows by name: the registry of builders that `FlowModel(flow=...)` and the command line use.

A *builder* is a function that returns a flow over events of a given shape as a standard TFP
object, a `tfd.TransformedDistribution` (base distribution, then bijector: the generative
direction):

```none
builder(event_shape, *, seed, dtype, **options) -> tfd.TransformedDistribution
```

`event_shape` is a tuple of ints, `seed` an int (or None) that fixes the initial weights and any
random choice, `dtype` `"float32"` or `"float64"`, and `options` the builder's own keyword
arguments, which must be JSON values (numbers, strings, booleans, None, lists and dicts of them):
a model saves them in its config and rebuilds the flow from them. A builder whose options involve
a random choice (`real_nvp`'s `permutation="random"`) registers `resolve_options`, which returns
the options with that choice made explicit (the permutation indices), so a saved model rebuilds
exactly, whatever numpy's random streams do in a later version.

The package registers `real_nvp` and `real_nvp_multiscale` (the names in
`tfp_realnvp.choices.BUILTIN_FLOWS`); `register_flow` adds a user's. The registry holds names and
functions only; the built-in builders' modules (which import TensorFlow) are imported when a
flow is first looked up.

Example:

    >>> def checkerboard_flow(event_shape, *, seed, dtype, num_couplings=4):
    ...     ...  # AffineCoupling(..., mask=checkerboard_mask(event_shape, parity=k % 2)) ...
    >>> register_flow("checkerboard_flow", checkerboard_flow)
    >>> FlowModel(event_shape=(4, 4, 1), flow="checkerboard_flow", num_couplings=6)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tfp_realnvp.choices import BUILTIN_FLOWS

__all__ = [
    "FlowBuilder",
    "flow_builder",
    "register_flow",
    "registered_flows",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclasses.dataclass(frozen=True)
class FlowBuilder:
    """A registered builder.

    Attributes:
      name: The registry name.
      build: `build(event_shape, *, seed, dtype, **options)`, returning a
        `tfd.TransformedDistribution`.
      resolve_options: `resolve_options(event_shape, seed, options) -> options` with every
        random choice made explicit, or None when the options are explicit already.
    """

    name: str
    build: Callable[..., Any]
    resolve_options: Callable[[tuple[int, ...], int | None, dict[str, Any]], dict[str, Any]] | None = None

    def resolve(self, event_shape: Sequence[int], seed: int | None, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options with their random choices made explicit (a copy; `options` is not changed)."""
        options = dict(options)
        if self.resolve_options is None:
            return options
        return dict(self.resolve_options(tuple(event_shape), seed, options))


_REGISTRY: dict[str, FlowBuilder] = {}


def register_flow(
    name: str,
    builder: Callable[..., Any],
    *,
    resolve_options: Callable[[tuple[int, ...], int | None, dict[str, Any]], dict[str, Any]] | None = None,
    replace: bool = False,
) -> None:
    """Registers `builder` under `name`, for `FlowModel(flow=name)`.

    Register before building or loading a model of that flow: a saved model names its flow and
    keeps the builder's options, not the builder itself.

    Args:
      name: The registry name: letters, digits, `_`, `.` and `-`, not starting with a digit.
      builder: `builder(event_shape, *, seed, dtype, **options)` returning a
        `tfd.TransformedDistribution`; see the module docstring.
      resolve_options: Optional `resolve_options(event_shape, seed, options) -> options`
        that makes every random choice in `options` explicit. Defaults to `None`.
      replace: Whether to replace a builder already registered under `name`. Defaults to
        `False`.

    Raises:
      TypeError: If `builder` (or `resolve_options`) is not callable.
      ValueError: If `name` is malformed, or taken and `replace` is False.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"flow name must be letters, digits, '_', '.' or '-', not starting with a digit; got {name!r}"
        )
    if not callable(builder):
        raise TypeError(f"builder must be callable; got {builder!r}")
    if resolve_options is not None and not callable(resolve_options):
        raise TypeError(f"resolve_options must be callable or None; got {resolve_options!r}")
    _load_builtins()
    if name in _REGISTRY and not replace:
        raise ValueError(f"a flow named {name!r} is already registered; pass replace=True to replace it")
    _REGISTRY[name] = FlowBuilder(name, builder, resolve_options)


def flow_builder(name: str) -> FlowBuilder:
    """The builder registered under `name`.

    Raises:
      ValueError: If no flow of that name is registered; the message lists those that are.
    """
    _load_builtins()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(
            f"no flow named {name!r} is registered; registered flows: {', '.join(registered_flows())} "
            "(a flow of your own must be registered with tfp_realnvp.register_flow before a model of it "
            "is built or loaded)"
        )
    return entry


def registered_flows() -> tuple[str, ...]:
    """The registered names: the built-in ones first (in `BUILTIN_FLOWS`' order, whatever order their
    modules were imported in), then the user's in registration order."""
    _load_builtins()
    return tuple(name for name in BUILTIN_FLOWS if name in _REGISTRY) + tuple(
        name for name in _REGISTRY if name not in BUILTIN_FLOWS)


# The module that registers each built-in flow when imported (which imports TensorFlow).
_BUILTIN_MODULES = {"real_nvp": "tfp_realnvp.flows.real_nvp", "real_nvp_multiscale": "tfp_realnvp.flows.multiscale"}


def _load_builtins() -> None:
    # Looking a flow up imports the built-in builders' modules, which register them.
    for name, module in _BUILTIN_MODULES.items():
        if name not in _REGISTRY:
            importlib.import_module(module)
