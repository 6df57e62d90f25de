"""Per-channel affine bijectors: the transform `BatchNormalization` and `ActNorm` share.

An event `[..., C]` (an image `[H, W, C]`, or a vector `[C]`) has `C` channels, its last axis.
A `ChannelAffine` bijector maps each channel `c` with its own `loc_c` and `log_scale_c`, which a
subclass computes (from batch statistics, running statistics or learned weights):

```none
inverse (data y -> latent x):  x = (y - loc) * exp(-log_scale)
forward (latent x -> data y):  y = x * exp(log_scale) + loc
log|det dx/dy| = -N * sum_c log_scale_c     (N: event entries per channel, H * W for [H, W, C])
log|det dy/dx| =  N * sum_c log_scale_c
```

The same for every example: the log-determinant depends on the batch at most through
statistics it shares.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

from tfp_realnvp import checks

__all__ = [
    "ChannelAffine",
    "channel_moments",
]

tfb = tfp.bijectors


def channel_moments(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and (biased) variance per channel, over every axis but the last: two `[C]` tensors."""
    return tf.nn.moments(x, axes=list(range(x.shape.rank - 1)))


class ChannelAffine(tfb.Bijector):
    """Base of the per-channel affine bijectors (see the module docstring for the transform).

    A subclass creates a Keras layer holding its weights, passes it to `__init__`, and
    implements `_loc_and_log_scale(y, training, update)`. `inverse` is called with `update=True`
    (a subclass may then change its state: running statistics, an initialisation), the log-det
    methods alone with `update=False`, and `forward` with `training=False` always: a latent
    batch says nothing about the data's statistics. `inverse` returns its log-det alongside,
    which TFP's cache keeps, so `log_prob` computes the parameters (and updates the state) once.

    The keyword `training` (a Python bool; `condition_keys`) reaches the bijector through
    `tfp_realnvp.routing`, and the weights' layer is listed in `keras_layers`
    (`tfp_realnvp.tracking`), so a `FlowModel` trains and saves it.
    """

    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse"
    )

    def __init__(
        self,
        event_shape: tuple[int, ...],
        weights: keras.layers.Layer,
        *,
        parameters: dict[str, Any],
        validate_args: bool,
        name: str,
    ) -> None:
        self._event_shape = event_shape
        self._layer = weights
        # Keras 3 layers are not tf.Modules: keeping the tf.Variables as an attribute makes
        # `bijector.trainable_variables` (and `variables`) complete.
        self._layer_variables = tuple(w.value for w in weights.weights)
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
    def event_shape(self) -> tuple[int, ...]:
        return self._event_shape

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """`("training",)`, which `tfp_realnvp.routing.route` delivers through a `tfb.Chain`."""
        return ("training",)

    @property
    def keras_layers(self) -> tuple[keras.layers.Layer, ...]:
        """The layer holding this bijector's weights (`tfp_realnvp.tracking`)."""
        return (self._layer,)

    def _loc_and_log_scale(self, y: tf.Tensor, training: bool, update: bool) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    # -- checks -------------------------------------------------------------------------

    def _channel_parameters(self, y: tf.Tensor, training: Any, update: bool) -> tuple[tf.Tensor, tf.Tensor]:
        self._check_event(y)
        return self._loc_and_log_scale(y, self._training_flag(training), update)

    def _check_event(self, x: tf.Tensor) -> None:
        if not x.dtype.is_floating:
            raise TypeError(f"{self.name} expects a floating-point input; got dtype {x.dtype.name}")
        rank = len(self._event_shape)
        trailing = tuple(x.shape[-rank:]) if x.shape.rank is not None and x.shape.rank >= rank else None
        if trailing != self._event_shape:
            raise ValueError(
                f"{self.name}: input of shape {x.shape} does not end in the event shape {list(self._event_shape)}"
            )
        if self.validate_args:
            tf.debugging.assert_all_finite(x, message=f"{self.name}: input has NaN or infinite values")

    def _training_flag(self, training: Any) -> bool:
        # The statistics are chosen when the graph is traced, as Keras chooses with its own flag.
        if training is None:
            return False
        try:
            return bool(checks.boolean(f"{self.name}: training", training, optional=True))
        except ValueError as error:
            raise TypeError(str(error)) from None

    # -- the transform ------------------------------------------------------------------

    def _ildj(self, y: tf.Tensor, log_scale: tf.Tensor) -> tf.Tensor:
        """`-N * sum_c log_scale_c` for every example of `y`: a tensor of `y`'s batch shape."""
        rank = y.shape.rank - len(self._event_shape)
        entries = math.prod(self._event_shape[:-1])
        return tf.fill(tf.shape(y)[:rank], -entries * tf.reduce_sum(log_scale))

    def _augmented_inverse(self, y: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, dict]:
        loc, log_scale = self._channel_parameters(y, training, update=True)
        return (y - loc) * tf.exp(-log_scale), {"ildj": self._ildj(y, log_scale)}

    def _augmented_forward(self, x: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, dict]:
        loc, log_scale = self._channel_parameters(x, False, update=False)
        return x * tf.exp(log_scale) + loc, {"ildj": self._ildj(x, log_scale)}

    def _forward(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self._augmented_forward(x, training)[0]

    def _inverse(self, y: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self._augmented_inverse(y, training)[0]

    def _inverse_log_det_jacobian(self, y: tf.Tensor, training: bool = False) -> tf.Tensor:
        # Without the cache (y not from this bijector's inverse): the same parameters, no update.
        return self._ildj(y, self._channel_parameters(y, training, update=False)[1])

    def _forward_log_det_jacobian(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return -self._ildj(x, self._channel_parameters(x, False, update=False)[1])

