"""The coupling plumbing every coupling bijector shares; the elementwise map is the subclass's.

With `x1` the unchanged part of the event, `x2` the rest, `theta(x1)` the conditioner's
parameters and `h(.; theta)` an elementwise invertible map (affine, a rational-quadratic spline):

```none
forward:   y1 = x1,   y2 = h(x2; theta(x1))
inverse:   x1 = y1,   x2 = h^{-1}(y2; theta(y1))
log|det dy/dx| = sum_i log h'(x2_i; theta(x1)),   log|det dx/dy| = -(the same, at x = inverse(y))
```

`Coupling` does the rest, once, for every map: the split by a count or a boolean mask
(`masks.CountSplit`, `masks.MaskSplit`), the conditioner evaluated once per call, the keyword
arguments routed to it (`condition_keys`, see `tfp_realnvp.routing`), the Keras layers listed for a
`keras.Model` (`keras_layers`, see `tfp_realnvp.tracking`), the log-determinant left in TFP's cache
by `forward` and `inverse`, the input checks and `validate_args`. A subclass supplies the map:

- `_map_parameters(outputs, x_transformed)`: the conditioner's outputs -> the map's parameters;
- `_map_forward(x2, params)` and `_map_inverse(y2, params)`: the transformed part and the log of
  `h'` per entry (at the input of the forward map in both);
- `_map_layers()`: Keras layers the map holds besides the conditioner (the affine map's bound).

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

from tfp_realnvp import checks
from tfp_realnvp.masks import CountSplit, MaskSplit

__all__ = [
    "Conditioner",
    "Coupling",
]

tfb = tfp.bijectors

Conditioner = Callable[..., Any]
"""`conditioner(x1, **condition_kwargs) -> outputs`: a Keras layer or any callable."""


class Coupling(tfb.Bijector):
    """A coupling bijector: the plumbing around an elementwise map chosen by the subclass.

    The unchanged part is given by a count (`num_masked`: the first `d` coordinates of a
    vector event, the last `|d|` when negative, as in `tfb.RealNVP`) or by a boolean `mask`
    over an event of any rank (True = unchanged). With a count the conditioner sees
    `x1 = x[..., :d]`; with a mask it sees `where(mask, x, 0)` and gives parameters over the
    whole event, of which only the entries where the mask is False are used.

    Every method evaluates the conditioner once; `forward` and `inverse` leave the log-determinant
    in TFP's bijector cache (the pattern of `tfb.FFJORD`), so `TransformedDistribution.log_prob`
    evaluates each conditioner once per call.

    Args:
      conditioner: A Keras 3 layer or any callable `conditioner(x1, **condition_kwargs)`.
      num_masked: Number of leading coordinates left unchanged (negative: trailing).
      mask: Boolean array over the event; True entries are left unchanged.
      event_shape: The event shape; with it the Keras layers are built at construction.
      validate_args: Whether to check inputs are finite at run time.
      parameters: The subclass's `dict(locals())`.
      name: Name of the bijector.

    Raises:
      ValueError: If both or neither of `num_masked` and `mask` are given, or the mask leaves
        nothing to transform (or nothing unchanged).
      TypeError: If `conditioner` is not callable.
    """

    # forward/inverse also return the log-det, which TFP's cache keeps for the LDJ methods.
    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse"
    )

    def __init__(
        self,
        conditioner: Conditioner,
        *,
        num_masked: int | None,
        mask: np.ndarray | Sequence[Any] | None,
        event_shape: Sequence[int] | None,
        validate_args: bool,
        parameters: dict[str, Any],
        name: str,
    ) -> None:
        if not callable(conditioner):
            raise TypeError(f"conditioner must be callable; got {conditioner!r}")
        if (num_masked is None) == (mask is None):
            raise ValueError("give exactly one of num_masked and mask")
        self._plumbing = CountSplit(num_masked) if mask is None else MaskSplit(mask)
        self._conditioner = conditioner
        self._event_shape: tuple[int, ...] | None = None
        self._layer_variables: tuple[tf.Variable, ...] = ()
        super().__init__(
            forward_min_event_ndims=self._plumbing.event_ndims,
            validate_args=validate_args,
            parameters=parameters,
            name=name,
        )
        if event_shape is None and mask is not None:
            event_shape = self._plumbing.event_shape
        if event_shape is not None:
            self._bind(checks.event_shape(event_shape))

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
    def condition_keys(self) -> tuple[str, ...]:
        """The keyword arguments the conditioner takes (`"context"` for an `MLPConditioner` with
        `context_size`), which `tfp_realnvp.routing.route` delivers through a `tfb.Chain`."""
        return tuple(getattr(self._conditioner, "condition_keys", ()))

    @property
    def keras_layers(self) -> tuple[keras.layers.Layer, ...]:
        """The Keras layers holding this coupling's weights; a `keras.Model` must track these.

        The conditioner (when it is a Keras layer), then the map's own (`_map_layers`). See
        `tfp_realnvp.tracking`.
        """
        layers = (self._conditioner, *self._map_layers())
        return tuple(layer for layer in layers if isinstance(layer, keras.layers.Layer))

    # -- what a map supplies ------------------------------------------------------------

    def _map_layers(self) -> tuple[Any, ...]:
        """Keras layers the map holds besides the conditioner."""
        return ()

    def _prepare_map(self, dtype: Any) -> None:
        """Makes what the map needs of the input's dtype (a layer of weights), before the first call."""

    def _build_map_layers(self, transformed_shape: tuple[int, ...]) -> None:
        """Builds the map's layers for the transformed part's event shape."""

    def _map_parameters(self, outputs: Any, x_transformed: tf.Tensor) -> Any:
        raise NotImplementedError

    def _map_forward(self, x: tf.Tensor, params: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """`(h(x), log h'(x))`, elementwise."""
        raise NotImplementedError

    def _map_inverse(self, y: tf.Tensor, params: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """`(x = h^{-1}(y), log h'(x))`, elementwise."""
        raise NotImplementedError

    def _map_log_derivative(self, x: tf.Tensor, params: Any) -> tf.Tensor:
        """`log h'(x)`, elementwise; the forward map's by default."""
        return self._map_forward(x, params)[1]

    def _map_inverse_log_derivative(self, y: tf.Tensor, params: Any) -> tf.Tensor:
        """`log h'(h^{-1}(y))`, elementwise; the inverse map's by default."""
        return self._map_inverse(y, params)[1]

    # -- building and checks ------------------------------------------------------------

    def _bind(self, event_shape: tuple[int, ...]) -> None:
        """Fixes the event shape and builds the Keras layers, so their variables exist."""
        self._plumbing.bind(event_shape)
        self._event_shape = event_shape
        self._build_layers()

    def _build_layers(self) -> None:
        if isinstance(self._conditioner, keras.layers.Layer) and not self._conditioner.built:
            self._conditioner.build((None,) + tuple(self._plumbing.conditioner_input_shape))
        self._build_map_layers(tuple(self._plumbing.transformed_shape))
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
        self._prepare_map(x.dtype.name)
        if self.validate_args:
            x = tf.debugging.assert_all_finite(
                x, message=f"{self.name}: input has NaN or infinite values; expected finite values"
            )
        return x

    def _check_outputs(self, values: Sequence[tf.Tensor], labels: Sequence[str], x_transformed: tf.Tensor,
                       expected: tf.TensorShape, what: str) -> None:
        """Raises unless each conditioner output has the input's dtype and the `expected` shape."""
        for label, value in zip(labels, values):
            if value.dtype != x_transformed.dtype:
                raise TypeError(
                    f"conditioner returned {label} of dtype {value.dtype.name}; expected "
                    f"{x_transformed.dtype.name}, the input's (build the conditioner with that dtype)"
                )
            if not value.shape.is_compatible_with(expected):
                raise ValueError(f"conditioner returned {label} of shape {value.shape}; expected {expected} ({what})")

    def _conditioned(self, x_masked: tf.Tensor, x_transformed: tf.Tensor, **condition_kwargs: Any) -> Any:
        """Evaluates the conditioner once and turns its outputs into the map's parameters."""
        params = self._map_parameters(self._conditioner(x_masked, **condition_kwargs), x_transformed)
        self._track_variables()
        return params

    def _reduce_event(self, log_derivative: tf.Tensor) -> tf.Tensor:
        if isinstance(self._plumbing, MaskSplit):
            # Unchanged entries add nothing (their map's value is discarded by the merge).
            log_derivative = tf.where(self._plumbing.mask, tf.zeros([], log_derivative.dtype), log_derivative)
        return tf.reduce_sum(log_derivative, axis=list(range(-self._plumbing.event_ndims, 0)))

    # -- the transform ------------------------------------------------------------------

    def _augmented_forward(self, x: tf.Tensor, **condition_kwargs: Any) -> tuple[tf.Tensor, dict]:
        x = self._check_input(x)
        x_masked, x_transformed = self._plumbing.split(x)
        params = self._conditioned(x_masked, x_transformed, **condition_kwargs)
        y_transformed, log_derivative = self._map_forward(x_transformed, params)
        y = self._plumbing.merge(x_masked, y_transformed)
        return y, {"ildj": -self._reduce_event(log_derivative)}

    def _augmented_inverse(self, y: tf.Tensor, **condition_kwargs: Any) -> tuple[tf.Tensor, dict]:
        y = self._check_input(y)
        y_masked, y_transformed = self._plumbing.split(y)
        params = self._conditioned(y_masked, y_transformed, **condition_kwargs)
        x_transformed, log_derivative = self._map_inverse(y_transformed, params)
        x = self._plumbing.merge(y_masked, x_transformed)
        return x, {"ildj": -self._reduce_event(log_derivative)}

    def _forward(self, x: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        return self._augmented_forward(x, **condition_kwargs)[0]

    def _inverse(self, y: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        return self._augmented_inverse(y, **condition_kwargs)[0]

    def _forward_log_det_jacobian(self, x: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        x = self._check_input(x)
        x_masked, x_transformed = self._plumbing.split(x)
        params = self._conditioned(x_masked, x_transformed, **condition_kwargs)
        return self._reduce_event(self._map_log_derivative(x_transformed, params))

    def _inverse_log_det_jacobian(self, y: tf.Tensor, **condition_kwargs: Any) -> tf.Tensor:
        y = self._check_input(y)
        y_masked, y_transformed = self._plumbing.split(y)
        params = self._conditioned(y_masked, y_transformed, **condition_kwargs)
        return -self._reduce_event(self._map_inverse_log_derivative(y_transformed, params))
