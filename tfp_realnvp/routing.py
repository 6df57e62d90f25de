"""Routing keyword arguments (a context, the training flag) to the bijectors of a flow that take them.

TFP passes keyword arguments down a `tfb.Chain` by name: `chain.forward(x, **{"coupling_3":
{"context": c}})` gives `coupling_3` the keyword `context`, and a `TransformedDistribution` takes
them as `log_prob(x, bijector_kwargs=...)`. A bijector says which keywords it takes in a
`condition_keys` property (`HoldsConditionKeys`): an `AffineCoupling` whose conditioner takes a
context lists `"context"`, a batch-normalization bijector `"training"`. `route(bijector, **kwargs)`
builds the nested dict that gives every such bijector its keywords, through `tfb.Chain`, any other
`tfb.Composition` and `tfb.Invert`:

```python
dist = real_nvp(2, context_size=3)
kwargs = route(dist.bijector, context=c)   # {"affine_coupling_0": {"context": c}, ...}
dist.log_prob(x, bijector_kwargs=kwargs)
```
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import tensorflow_probability as tfp
from tensorflow_probability.python.bijectors import invert as invert_lib

from tfp_realnvp.tracking import parts

__all__ = [
    "HoldsConditionKeys",
    "condition_keys",
    "route",
]

tfb = tfp.bijectors
# tfb.Invert hands out its private base class when the inner bijector is not a CompositeTensor
# (as ours, which hold Keras layers, are not), and tfb.Invert is a subclass of it, not the reverse.
_Invert = invert_lib._Invert  # pylint: disable=protected-access


@runtime_checkable
class HoldsConditionKeys(Protocol):
    """A bijector that takes keyword arguments beyond its input: a context, the training flag."""

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """The keyword arguments its `forward`, `inverse` and log-det methods take."""


def _keys(bijector: Any) -> tuple[str, ...]:
    return tuple(bijector.condition_keys) if isinstance(bijector, HoldsConditionKeys) else ()


def condition_keys(flow: Any) -> set[str]:
    """Every keyword some bijector of `flow` (a bijector or distribution) takes."""
    return {key for part in parts(flow) if isinstance(part, tfb.Bijector) for key in _keys(part)}


def route(bijector: tfb.Bijector, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments of `bijector.forward` (or `inverse`, or a log-det) that give each
    bijector inside it the `kwargs` it takes.

    Args:
      bijector: A bijector, e.g. a flow's `tfb.Chain`.
      **kwargs: Keyword values, such as `context=c` or `training=True`. A value of `None` is left
        out.

    Returns:
      For a composition (`tfb.Chain`, `tfb.Blockwise`, ...), `{part.name: that part's kwargs}`
      for the parts that take any; for `tfb.Invert`, its bijector's; for any other bijector,
      the `kwargs` it lists in `condition_keys`.

    Raises:
      ValueError: If two parts of one composition that take keywords share a name (TFP routes
        by name, so both would get the same).
    """
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    if not kwargs:
        return {}
    if isinstance(bijector, _Invert):
        return route(bijector.bijector, **kwargs)
    if isinstance(bijector, tfb.Composition):
        routed: dict[str, Any] = {}
        for part in bijector.bijectors:
            sub = route(part, **kwargs)
            if not sub:
                continue
            if part.name in routed:
                raise ValueError(
                    f"two bijectors named {part.name!r} in {bijector.name!r} take keyword arguments; TFP routes "
                    "them by name, so give each a name of its own"
                )
            routed[part.name] = sub
        return routed
    return {key: value for key, value in kwargs.items() if key in _keys(bijector)}
