"""The affine coupling bijector of Real NVP [1].

With `x1` the unchanged part of the event, `x2` the rest and `(t, s)` the conditioner's shift
and bounded log-scale of `x1`:

```none
forward:   y1 = x1,   y2 = x2 * exp(s(x1)) + t(x1)
inverse:   x1 = y1,   x2 = (y2 - t(y1)) * exp(-s(y1))
log|det dy/dx| = sum s(x1),   log|det dx/dy| = -sum s(y1)
```

References:
  [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
      ICLR 2017. https://arxiv.org/abs/1605.08803
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import checks
from tfp_realnvp.bijectors.coupling import Conditioner, Coupling
from tfp_realnvp.bounds import LOG_SCALE_BOUNDS, make_log_scale_bound

__all__ = [
    "AffineCoupling",
    "Conditioner",
]

tfb = tfp.bijectors

class AffineCoupling(Coupling):
    """The affine coupling layer of Real NVP [1], as a TFP bijector.

    With `x1` the unchanged ("masked") part of the event, `x2` the rest, `(t, r)` the
    conditioner's output on `x1` and `s = bound(r)` the bounded log-scale:

    ```none
    forward:  y1 = x1,  y2 = x2 * exp(s(x1)) + t(x1)
    inverse:  x1 = y1,  x2 = (y2 - t(y1)) * exp(-s(y1))
    log|det dy/dx| =  sum s(x1)      (forward_log_det_jacobian)
    log|det dx/dy| = -sum s(y1)      (inverse_log_det_jacobian)
    ```

    The unchanged part is given by a count (`num_masked`: the first `d` coordinates of a
    vector event, the last `|d|` when negative, as in `tfb.RealNVP`) or by a boolean `mask`
    over an event of any rank (True = unchanged; checkerboard and channel masks for
    images). With a count, the conditioner sees `x1 = x[..., :d]` and returns `(shift,
    log_scale)` of shape `batch + [D - d]`. With a mask, it sees `where(mask, x, 0)` and
    returns both over the whole event; entries where the mask is True are ignored.

    Every method evaluates the conditioner once. `forward` and `inverse` compute the
    log-determinant alongside and leave it in TFP's bijector cache, so
    `TransformedDistribution.log_prob` and `sample_and_log_prob` evaluate each conditioner
    once per call. That plumbing is `tfp_realnvp.bijectors.coupling.Coupling`'s, shared with
    `SplineCoupling`; this class is the affine map and its bound.

    Args:
      conditioner: A Keras 3 layer or any callable `conditioner(x1, **condition_kwargs) ->
        (shift, log_scale)`, e.g. `MLPConditioner`. Keyword arguments given to `forward`,
        `inverse` and the log-det methods are passed through to it.
      num_masked: Number of leading coordinates left unchanged (negative: trailing).
        Exactly one of `num_masked` and `mask` must be given.
      mask: Boolean array over the event; True entries are left unchanged.
      event_shape: The event shape. Defaults to `None`: the mask's shape, or, with
        `num_masked`, the shape of the first input. When known, the conditioner is built at
        construction, so `trainable_variables` is complete before the first call.
      log_scale_bound: How the conditioner's raw log-scale is bounded: `"tanh"` (the
        paper's `scale * tanh(raw)` with a learned per-dimension scale), `"sigmoid"`
        (Glow's `log(sigmoid(raw + 2))`) or `"unbounded"`; the first two keep
        `|s| <= bounds.MAX_LOG_SCALE` (4). Defaults to `"tanh"`.
      validate_args: Whether to check inputs are finite at run time. Defaults to `False`.
      name: Name of the bijector. Defaults to `"affine_coupling"`.

    Raises:
      ValueError: If both or neither of `num_masked` and `mask` are given; if the mask is
        all True or all False, or does not match `event_shape`; if `num_masked` is out of
        range for the event; for an unknown `log_scale_bound`.
      TypeError: If `conditioner` is not callable, `mask` is not boolean or `num_masked` is
        not an int.

    Example:

    ```python
    coupling = AffineCoupling(
        MLPConditioner((64, 64), output_shape=(1,)), num_masked=1, event_shape=(2,))
    x = tf.random.normal([5, 2])
    y = coupling.forward(x)
    fldj = coupling.forward_log_det_jacobian(x, event_ndims=1)  # shape [5]
    ```

    References:
      [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real
          NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
    """

    def __init__(
        self,
        conditioner: Conditioner,
        *,
        num_masked: int | None = None,
        mask: np.ndarray | Sequence[Any] | None = None,
        event_shape: Sequence[int] | None = None,
        log_scale_bound: str = "tanh",
        validate_args: bool = False,
        name: str = "affine_coupling",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            checks.one_of("log_scale_bound", log_scale_bound, LOG_SCALE_BOUNDS)
            self._log_scale_bound = log_scale_bound
            # The bound's weights (tanh's learned scale) take the input's dtype: a Keras
            # conditioner's policy says it now; for a plain callable the first input will.
            self._bound = self._bound_layer = None
            super().__init__(conditioner, num_masked=num_masked, mask=mask, event_shape=event_shape,
                             validate_args=validate_args, parameters=parameters, name=name)
            dtype_policy = getattr(conditioner, "dtype_policy", None)
            if dtype_policy is not None:
                self._make_bound(dtype_policy)

    @property
    def log_scale_bound(self) -> str:
        return self._log_scale_bound

    # -- the bound: the map's own layer -------------------------------------------------

    def _map_layers(self) -> tuple[Any, ...]:
        return (self._bound_layer,)

    def _make_bound(self, dtype: Any) -> None:
        self._bound, self._bound_layer = make_log_scale_bound(
            self._log_scale_bound, event_ndims=self._plumbing.event_ndims, dtype=dtype
        )
        if self._event_shape is not None:
            self._build_layers()

    def _prepare_map(self, dtype: Any) -> None:
        if self._bound is None:
            self._make_bound(dtype)

    def _build_map_layers(self, transformed_shape: tuple[int, ...]) -> None:
        if self._bound_layer is not None and not self._bound_layer.built:
            self._bound_layer.build((None,) + transformed_shape)

    # -- the affine map -----------------------------------------------------------------

    def _map_parameters(self, outputs: Any, x_transformed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`(shift, log_scale)`: the conditioner's pair, checked, the log-scale bounded."""
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
            raise ValueError(
                f"conditioner must return a pair (shift, log_scale); got {type(outputs).__name__}"
            )
        shift, raw = outputs
        self._check_outputs((shift, raw), ("shift", "log_scale"), x_transformed, x_transformed.shape,
                            f"batch shape + the transformed part's event shape {self._plumbing.transformed_shape}")
        return self._plumbing.mask_params(shift, self._bound(raw))

    def _map_forward(self, x: tf.Tensor, params: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        shift, log_scale = params
        return x * tf.exp(log_scale) + shift, log_scale

    def _map_inverse(self, y: tf.Tensor, params: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        shift, log_scale = params
        return (y - shift) * tf.exp(-log_scale), log_scale

    def _map_log_derivative(self, x: tf.Tensor, params: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        return params[1]

    def _map_inverse_log_derivative(self, y: tf.Tensor, params: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        # y1 = x1, so the log-scale seen by the inverse is the forward one.
        return params[1]
