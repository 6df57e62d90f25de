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

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from tfp_realnvp.bounds import LOG_SCALE_BOUNDS, make_log_scale_bound
from tfp_realnvp.masks import CountSplit, MaskSplit

__all__ = [
    "AffineCoupling",
    "Conditioner",
]

tfb = tfp.bijectors

Conditioner = Callable[..., tuple[tf.Tensor, tf.Tensor]]


class AffineCoupling(tfb.Bijector):
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
    once per call.

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

    # forward/inverse also return the log-det, which TFP's cache keeps for the LDJ methods
    # (the pattern of tfb.FFJORD).
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse"
    )

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
            if not callable(conditioner):
                raise TypeError(f"conditioner must be callable; got {conditioner!r}")
            if (num_masked is None) == (mask is None):
                raise ValueError("give exactly one of num_masked and mask")
            if log_scale_bound not in LOG_SCALE_BOUNDS:
                raise ValueError(
                    f"log_scale_bound must be one of {LOG_SCALE_BOUNDS}; got {log_scale_bound!r}"
                )
            self._plumbing = CountSplit(num_masked) if mask is None else MaskSplit(mask)
            self._conditioner = conditioner
            self._log_scale_bound = log_scale_bound
            # The bound's weights (tanh's learned scale) take the input's dtype: a Keras
            # conditioner's policy says it now; for a plain callable the first input will.
            self._bound = self._bound_layer = None
            self._event_shape: tuple[int, ...] | None = None
            self._layer_variables: tuple[tf.Variable, ...] = ()
            dtype_policy = getattr(conditioner, "dtype_policy", None)
            if dtype_policy is not None:
                self._make_bound(dtype_policy)
            super().__init__(
                forward_min_event_ndims=self._plumbing.event_ndims,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )
            if event_shape is None and mask is not None:
                event_shape = self._plumbing.event_shape
            if event_shape is not None:
                self._bind(tuple(int(n) for n in event_shape))

    @classmethod
    def _parameter_properties(cls, dtype: Any, num_classes: Any = None) -> dict[str, Any]:
        return dict()

    @property
    def conditioner(self) -> Conditioner:
        return self._conditioner

    @property
    def num_masked(self) -> int | None:
        return getattr(self._plumbing, "num_masked", None)

    @property
    def mask(self) -> np.ndarray | None:
        return getattr(self._plumbing, "mask", None)

    @property
    def event_shape(self) -> tuple[int, ...] | None:
        """The event shape, once given or seen."""
        return self._event_shape

    @property
    def log_scale_bound(self) -> str:
        return self._log_scale_bound

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """The keyword arguments the conditioner takes (`"context"` for an `MLPConditioner` with
        `context_size`), which `tfp_realnvp.routing.route` delivers through a `tfb.Chain`."""
        return tuple(getattr(self._conditioner, "condition_keys", ()))

    @property
    def keras_layers(self) -> tuple[keras.layers.Layer, ...]:
        """The Keras layers holding this coupling's weights; a `keras.Model` must track these.

        The conditioner (when it is a Keras layer) and the bound's layer (`"tanh"`'s learned
        scale). With a plain-callable conditioner the bound's layer takes the dtype of the
        first input, so it is listed from the first call on. See `tfp_realnvp.tracking`.
        """
        layers = (self._conditioner, self._bound_layer)
        return tuple(layer for layer in layers if isinstance(layer, keras.layers.Layer))

    # -- building and checks ------------------------------------------------------------

    def _make_bound(self, dtype: Any) -> None:
        self._bound, self._bound_layer = make_log_scale_bound(
            self._log_scale_bound, event_ndims=self._plumbing.event_ndims, dtype=dtype
        )
        if self._event_shape is not None:
            self._build_layers()

    def _bind(self, event_shape: tuple[int, ...]) -> None:
        """Fixes the event shape and builds the Keras layers, so their variables exist."""
        self._plumbing.bind(event_shape)
        self._event_shape = event_shape
        self._build_layers()

    def _build_layers(self) -> None:
        if isinstance(self._conditioner, keras.layers.Layer) and not self._conditioner.built:
            self._conditioner.build((None,) + tuple(self._plumbing.conditioner_input_shape))
        if self._bound_layer is not None and not self._bound_layer.built:
            self._bound_layer.build((None,) + tuple(self._plumbing.transformed_shape))
        self._track_variables()

    def _track_variables(self) -> None:
        # Keras 3 layers are not tf.Modules, so tf.Module.trainable_variables cannot see
        # their weights; keeping the underlying tf.Variables as an attribute makes
        # `bijector.trainable_variables` (and `distribution.trainable_variables`) complete.
        variables = tuple(w.value for layer in self.keras_layers for w in layer.weights)
        if len(variables) != len(self._layer_variables):
            self._layer_variables = variables

    def _check_input(self, x: tf.Tensor) -> tf.Tensor:
        if not x.dtype.is_floating:
            raise TypeError(f"{self.name} expects a floating-point input; got dtype {x.dtype.name}")
        ndims = self._plumbing.event_ndims
        event_shape = tuple(x.shape[-ndims:]) if x.shape.rank is not None else None
        if event_shape is None or len(event_shape) < ndims or None in event_shape:
            raise ValueError(
                f"{self.name} needs a static event shape of rank {ndims}; got input shape {x.shape}"
            )
        if self._event_shape is None:
            self._bind(event_shape)
        elif event_shape != self._event_shape:
            if ndims == 1:
                raise ValueError(
                    f"event size {event_shape[0]} does not match the coupling's {self._event_shape[0]}"
                )
            raise ValueError(
                f"event shape {event_shape} does not match the coupling's {self._event_shape}"
            )
        if self._bound is None:
            self._make_bound(x.dtype.name)
        if self.validate_args:
            x = tf.debugging.assert_all_finite(
                x, message=f"{self.name}: input has NaN or infinite values; expected finite values"
            )
        return x

    def _shift_and_log_scale(
        self, x_masked: tf.Tensor, x_transformed: tf.Tensor, **condition_kwargs: Any
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Evaluates the conditioner once and bounds its log-scale."""
        params = self._conditioner(x_masked, **condition_kwargs)
        if not isinstance(params, (tuple, list)) or len(params) != 2:
            raise ValueError(
                f"conditioner must return a pair (shift, log_scale); got {type(params).__name__}"
            )
        shift, raw = params
        expected = x_transformed.shape
        for label, value in (("shift", shift), ("log_scale", raw)):
            if value.dtype != x_transformed.dtype:
                raise TypeError(
                    f"conditioner returned {label} of dtype {value.dtype.name}; expected "
                    f"{x_transformed.dtype.name}, the input's (build the conditioner with that dtype)"
                )
            if not value.shape.is_compatible_with(expected):
                raise ValueError(
                    f"conditioner returned {label} of shape {value.shape}; expected {expected} "
                    f"(batch shape + the transformed part's event shape "
                    f"{self._plumbing.transformed_shape})"
                )
        log_scale = self._bound(raw)
        self._track_variables()
        return self._plumbing.mask_params(shift, log_scale)

    def _reduce_event(self, log_scale: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(log_scale, axis=list(range(-self._plumbing.event_ndims, 0)))

    # -- the transform ------------------------------------------------------------------

    def _augmented_forward(self, x: tf.Tensor, **condition_kwargs: Any) -> tuple[tf.Tensor, dict]:
        x = self._check_input(x)
        x_masked, x_transformed = self._plumbing.split(x)
        shift, log_scale = self._shift_and_log_scale(x_masked, x_transformed, **condition_kwargs)
        y_transformed = x_transformed * tf.exp(log_scale) + shift
        y = self._plumbing.merge(x_masked, y_transformed)
        return y, {"ildj": -self._reduce_event(log_scale)}

    def _augmented_inverse(self, y: tf.Tensor, **condition_kwargs: Any) -> tuple[tf.Tensor, dict]:
        y = self._check_input(y)
        y_masked, y_transformed = self._plumbing.split(y)
        shift, log_scale = self._shift_and_log_scale(y_masked, y_transformed, **condition_kwargs)
        x_transformed = (y_transformed - shift) * tf.exp(-log_scale)
        x = self._plumbing.merge(y_masked, x_transformed)
        return x, {"ildj": -self._reduce_event(log_scale)}

    def _forward(self, x: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        return self._augmented_forward(x, **condition_kwargs)[0]

    def _inverse(self, y: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        return self._augmented_inverse(y, **condition_kwargs)[0]

    def _log_scale(self, z: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        z = self._check_input(z)
        z_masked, z_transformed = self._plumbing.split(z)
        return self._shift_and_log_scale(z_masked, z_transformed, **condition_kwargs)[1]

    def _forward_log_det_jacobian(self, x: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        return self._reduce_event(self._log_scale(x, **condition_kwargs))

    def _inverse_log_det_jacobian(self, y: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        # y1 = x1, so the log-scale seen by the inverse is the forward one.
        return -self._reduce_event(self._log_scale(y, **condition_kwargs))
