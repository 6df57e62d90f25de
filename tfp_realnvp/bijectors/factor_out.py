"""Factoring out: a bijector applied to the first channels of an event, the rest passed through unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from tfp_realnvp import checks
from tfp_realnvp.routing import condition_keys, route

__all__ = [
    "FactorOut",
]

tfb = tfp.bijectors


class FactorOut(tfb.Bijector):
    """Applies `bijector` (`g`) to the first `num_kept` channels; the others pass through unchanged.

    With channels on the last axis of the event and `k = num_kept`:

    ```none
    forward:  y = concat(g(x[..., :k]), x[..., k:])
    inverse:  x = concat(g^{-1}(y[..., :k]), y[..., k:])
    log|det dy/dx| = log|det dg/dx[..., :k]|,   log|det dx/dy| = log|det dg^{-1}/dy[..., :k]|
    ```

    This is Real NVP's factoring out [1] (section 3.6) with the latent kept in the event's
    shape: in the data-to-latent direction, the channels from `k` on have left the flow (they
    are latent variables already, distributed as the base), and only the first `k` go on
    through the next scale `g`. The log-determinant is that of `g`, as in the paper.

    Keyword arguments (a `training` flag, a context) reach `g`'s parts through
    `tfp_realnvp.routing`: this bijector lists every key they take in `condition_keys`.
    `forward` and `inverse` return `g`'s log-det alongside, so `g` (its conditioners, its
    batch statistics) runs once per `log_prob`.

    Args:
      bijector: `g`, a bijector over events `event_shape[:-1] + [num_kept]` that keeps that
        shape.
      num_kept: How many leading channels `g` transforms, `1 <= num_kept < channels`.
      event_shape: The event shape, channels last.
      validate_args: Passed to `tfb.Bijector`. Defaults to `False`.
      name: Name of the bijector. Defaults to `"factor_out"`.

    Raises:
      ValueError: If `num_kept` is out of range, or `g` changes the shape of its part.

    Example:

    ```python
    half = FactorOut(tfb.Scale(2.0), num_kept=2, event_shape=(4, 4, 4))
    y = half.forward(tf.ones([3, 4, 4, 4]))  # channels 0, 1 doubled; 2, 3 unchanged
    half.forward_log_det_jacobian(tf.ones([3, 4, 4, 4]), event_ndims=3)  # 32 log 2 each: [3]
    ```

    References:
      [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real
          NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
    """

    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse"
    )

    def __init__(
        self,
        bijector: tfb.Bijector,
        *,
        num_kept: int,
        event_shape: Sequence[int],
        validate_args: bool = False,
        name: str = "factor_out",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            event_shape = checks.event_shape(event_shape, example="[8, 8, 1]")
            channels = event_shape[-1]
            num_kept = checks.integer(f"num_kept for an event of {channels} channels", num_kept, 1, channels - 1)
            kept_shape = (*event_shape[:-1], num_kept)
            if tuple(bijector.forward_event_shape(kept_shape)) != kept_shape:
                raise ValueError(
                    f"the factored bijector {bijector.name!r} maps events {list(kept_shape)} to "
                    f"{list(bijector.forward_event_shape(kept_shape))}; expected it to keep their shape"
                )
            self._bijector = bijector
            self._num_kept = num_kept
            self._event_shape = event_shape
            self._keys = tuple(sorted(condition_keys(bijector)))
            super().__init__(
                forward_min_event_ndims=len(event_shape),
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype: Any, num_classes: Any = None) -> dict[str, Any]:
        return dict()

    @property
    def bijector(self) -> tfb.Bijector:
        return self._bijector

    @property
    def num_kept(self) -> int:
        return self._num_kept

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """Every keyword some part of the factored bijector takes (`tfp_realnvp.routing`)."""
        return self._keys

    def _split(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if x.shape.rank is None or tuple(x.shape[-len(self._event_shape):]) != self._event_shape:
            raise ValueError(f"{self.name}: input of shape {x.shape} does not end in the event shape "
                             f"{list(self._event_shape)}")
        return x[..., : self._num_kept], x[..., self._num_kept:]

    def _augmented_forward(self, x: tf.Tensor, **kwargs: Any) -> tuple[tf.Tensor, dict]:
        x1, x2 = self._split(x)
        inner = route(self._bijector, **kwargs)
        fldj = self._bijector.forward_log_det_jacobian(x1, event_ndims=len(self._event_shape), **inner)
        y1 = self._bijector.forward(x1, **inner)
        return tf.concat([y1, x2], axis=-1), {"ildj": -fldj}

    def _augmented_inverse(self, y: tf.Tensor, **kwargs: Any) -> tuple[tf.Tensor, dict]:
        y1, y2 = self._split(y)
        inner = route(self._bijector, **kwargs)
        x1 = self._bijector.inverse(y1, **inner)  # first: a batch-norm part updates its statistics here
        ildj = self._bijector.inverse_log_det_jacobian(y1, event_ndims=len(self._event_shape), **inner)
        return tf.concat([x1, y2], axis=-1), {"ildj": ildj}

    def _forward(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return self._augmented_forward(x, **kwargs)[0]

    def _inverse(self, y: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return self._augmented_inverse(y, **kwargs)[0]

    def _forward_log_det_jacobian(self, x: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return -self._augmented_forward(x, **kwargs)[1]["ildj"]

    def _inverse_log_det_jacobian(self, y: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return self._augmented_inverse(y, **kwargs)[1]["ildj"]
