"""Finding every Keras layer inside a flow, so a `keras.Model` can track, train and save its weights.

A `keras.Model` tracks the layers assigned to its attributes, not layers held by TFP bijectors
held by a distribution: a conditioner inside an `AffineCoupling` inside a `tfb.Chain` is invisible
to it, and `fit` then silently trains nothing. The protocol that closes the gap:

- a bijector (or distribution) that holds Keras layers lists them in a `keras_layers` property
  (`HoldsKerasLayers`), including layers it creates itself (`AffineCoupling`'s `TanhLogScale`);
- `keras_layers(flow)` walks the flow (every bijector and distribution reachable through TFP's
  `parameters`, the constructor arguments every TFP object records: a `tfb.Chain`'s bijectors,
  a `tfb.Invert`'s bijector, a `TransformedDistribution`'s bijector and base, ...) and returns
  every layer declared so or passed as a constructor argument;
- `untracked_layers(flow)` looks for layers anywhere in the attributes of those objects that the
  walk did not find: a bijector that keeps a layer without declaring it. `FlowModel` refuses such a
  flow rather than train part of it.

Example:

    >>> dist = real_nvp(2, num_couplings=2, hidden_units=(8,))
    >>> len(keras_layers(dist))  # two conditioners and their two tanh scales
    4
    >>> untracked_layers(dist)
    []
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import keras
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "HoldsKerasLayers",
    "keras_layers",
    "parts",
    "untracked_layers",
    "untracked_variables",
]

tfb = tfp.bijectors
tfd = tfp.distributions


@runtime_checkable
class HoldsKerasLayers(Protocol):
    """A bijector or distribution whose weights live in Keras layers it lists."""

    @property
    def keras_layers(self) -> tuple[keras.layers.Layer, ...]:
        """Every Keras layer holding this object's weights, its own and its arguments'."""


def _children(value: Any) -> Iterator[Any]:
    """The objects inside `value`: itself, or the items of a list, tuple or dict, recursively."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _children(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _children(item)
    else:
        yield value


def parts(flow: Any) -> Iterator[tfb.Bijector | tfd.Distribution]:
    """Every bijector and distribution inside `flow` (itself included), once each, depth first.

    The walk follows TFP's `parameters` (each object's constructor arguments), so it reaches
    through `tfb.Chain`, `tfb.Invert`, `tfb.Blockwise`, `tfd.TransformedDistribution`,
    `tfd.Sample` and any other TFP composite, in the order of their arguments.
    """
    seen: set[int] = set()
    stack = [flow]
    while stack:
        node = stack.pop()
        if id(node) in seen or not isinstance(node, (tfb.Bijector, tfd.Distribution)):
            continue
        seen.add(id(node))
        yield node
        stack.extend(reversed(list(_children(dict(node.parameters)))))


def keras_layers(flow: tfb.Bijector | tfd.Distribution) -> list[keras.layers.Layer]:
    """The Keras layers holding a flow's weights, in a stable order, each once.

    Args:
      flow: A bijector or distribution, e.g. the `TransformedDistribution` of `real_nvp`.

    Returns:
      Every layer that a bijector or distribution of the flow lists in `keras_layers`, and
      every layer passed to one as a constructor argument.
    """
    found: dict[int, keras.layers.Layer] = {}
    for node in parts(flow):
        declared = tuple(node.keras_layers) if isinstance(node, HoldsKerasLayers) else ()
        arguments = tuple(v for v in _children(dict(node.parameters)) if isinstance(v, keras.layers.Layer))
        for layer in (*declared, *arguments):
            found.setdefault(id(layer), layer)
    return list(found.values())


_HELPER_DEPTH = 3  # plain objects followed from a bijector's attributes, at most this deep
# Not helpers: TensorFlow's own objects, classes and functions (a plain-callable conditioner
# object is a helper: it may hold layers).
_NOT_HELPERS = (tf.Module, tf.Variable, tf.Tensor, type, types.FunctionType, types.MethodType,
                types.BuiltinFunctionType, types.ModuleType, functools.partial)


def _held_layers(value: Any, depth: int, seen: set[int]) -> Iterator[keras.layers.Layer]:
    """The Keras layers in `value`: itself, in its containers, or in the attributes of plain helper
    objects (not tf.Modules, tensors or other TFP or Keras objects), `depth` levels down."""
    for item in _children(value):
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, keras.layers.Layer):
            yield item
        elif (depth > 0 and hasattr(item, "__dict__") and not isinstance(item, _NOT_HELPERS)
              and type(item).__module__.split(".")[0] not in ("tensorflow", "keras", "numpy")):
            for name, attribute in vars(item).items():
                if not name.startswith("_self_"):
                    yield from _held_layers(attribute, depth - 1, seen)


def untracked_layers(flow: tfb.Bijector | tfd.Distribution) -> list[tuple[str, str, keras.layers.Layer]]:
    """Keras layers kept in the attributes of the flow's objects that `keras_layers` does not find.

    The attributes are searched through lists, tuples, dicts and plain helper objects (three
    levels deep), where a layer would be as invisible to a `keras.Model` as anywhere else.

    Returns:
      `(object name, attribute, layer)` for each; an empty list when every layer is declared.
    """
    declared = {id(layer) for layer in keras_layers(flow)}
    missing = []
    for node in parts(flow):
        for attribute, value in vars(node).items():
            if attribute.startswith("_self_"):  # tf.Module's own bookkeeping, which lists the others again
                continue
            for layer in _held_layers(value, _HELPER_DEPTH, set()):
                if id(layer) not in declared:
                    missing.append((node.name, attribute, layer))
                    declared.add(id(layer))
    return missing


def untracked_variables(flow: tfb.Bijector | tfd.Distribution, tracked: list[Any]) -> list[tf.Variable]:
    """The `tf.Variable`s a flow holds (as a `tf.Module` sees them) that are not among `tracked`.

    Args:
      flow: A bijector or distribution.
      tracked: Keras variables (e.g. `model.weights`) or `tf.Variable`s.

    Returns:
      Each variable of `flow.variables` that is not, and does not back, one of `tracked`: a
      `tf.Variable` held by a bijector outside any Keras layer, which a Keras model neither
      trains nor saves.
    """
    known = {id(v.value if isinstance(v, keras.Variable) else v) for v in tracked}
    return [v for v in flow.variables if id(v) not in known]
