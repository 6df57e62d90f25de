"""Glow's activation normalization: a learned per-channel affine map, initialised from the first batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from tfp_realnvp import checks
from tfp_realnvp.bijectors.channels import ChannelAffine, channel_moments

__all__ = [
    "ActNorm",
    "ActNormWeights",
]


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ActNormWeights(keras.layers.Layer):
    """The weights of an `ActNorm` bijector: `loc` and `log_scale` per channel (trained), and
    `initialized` (0 or 1, not trained), saved with the model so a loaded one is not initialised again."""

    def __init__(self, channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = int(channels)
        shape = (self.channels,)
        self.loc = self.add_weight(name="loc", shape=shape, initializer="zeros")
        self.log_scale = self.add_weight(name="log_scale", shape=shape, initializer="zeros")
        self.initialized = self.add_weight(name="initialized", shape=(), initializer="zeros", trainable=False)
        self.built = True

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channels": self.channels}


class ActNorm(ChannelAffine):
    """Glow's activation normalization [1], with data-dependent initialisation, as a bijector.

    A per-channel affine map (channels: the last axis of the event) with learned `loc` and
    `log_scale`, and `N` the number of event entries per channel (`H * W` for `[H, W, C]`):

    ```none
    inverse (data y -> latent x):  x = (y - loc) * exp(-log_scale)
    forward (latent x -> data y):  y = x * exp(log_scale) + loc
    log|det dx/dy| = -N * sum_c log_scale_c                      (inverse_log_det_jacobian)
    log|det dy/dx| =  N * sum_c log_scale_c                      (forward_log_det_jacobian)
    ```

    Initialisation: the first `inverse` called with `training=True` (the first training step
    of `FlowModel.fit`) sets `loc` to the batch's per-channel mean and `log_scale` to the log of
    its standard deviation (`0.5 log(var + epsilon)`), so that batch leaves with zero mean and
    unit variance per channel, and sets `initialized` to 1; from then on the two are trained
    like any weight. Before it, the map is the identity. Calls with `training=False` (the
    default: `FlowModel`'s build on a zero batch, `log_prob`, `evaluate`, sampling, the export)
    never initialise. The flag is a weight, so a model saved after training and loaded again is
    not initialised a second time. Under `tf.function` and XLA the initial values are chosen
    with `tf.where` on the flag and assigned at every training call (the same values once
    initialised): no data-dependent control flow.

    Args:
      event_shape: The event shape, e.g. `[8, 8, 1]` or `[D]`; its last axis holds the
        channels.
      epsilon: Added to the variance at initialisation. Defaults to 1e-6.
      dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      validate_args: Whether to check inputs are finite at run time. Defaults to `False`.
      name: Name of the bijector. Defaults to `"act_norm"`.

    Raises:
      ValueError: For an empty or non-positive `event_shape` or `epsilon <= 0`; at call time,
        for an input whose trailing axes are not the event shape.

    Example:

    ```python
    act_norm = ActNorm(event_shape=(4, 4, 2))
    y = tf.random.normal([16, 4, 4, 2]) * 3.0 + 1.0
    x = act_norm.inverse(y, training=True)   # initialises: x has zero mean, unit variance
    act_norm.inverse_log_det_jacobian(y, event_ndims=3)  # [16]: -16 * sum(log_scale)
    ```

    References:
      [1] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
          Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        epsilon: float = 1e-6,
        dtype: str = "float32",
        validate_args: bool = False,
        name: str = "act_norm",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            event_shape = checks.event_shape(event_shape, example="[8, 8, 1]")
            self._epsilon = checks.number("epsilon", epsilon, positive=True)
            weights = ActNormWeights(event_shape[-1], dtype=dtype, name=f"{name.rstrip('/')}_weights")
            super().__init__(event_shape, weights, parameters=parameters, validate_args=validate_args, name=name)

    @property
    def loc(self) -> keras.Variable:
        return self._layer.loc

    @property
    def log_scale(self) -> keras.Variable:
        return self._layer.log_scale

    @property
    def initialized(self) -> bool:
        """Whether the data-dependent initialisation has happened (eagerly: a Python bool)."""
        return bool(self._layer.initialized.numpy() > 0.5)

    def _loc_and_log_scale(self, y: tf.Tensor, training: bool, update: bool) -> tuple[tf.Tensor, tf.Tensor]:
        weights = self._layer
        loc, log_scale = weights.loc.value, weights.log_scale.value
        if not training:
            return loc, log_scale
        # Until initialised, the batch's own statistics (as constants: the initial values).
        mean, variance = channel_moments(tf.stop_gradient(y))
        done = weights.initialized.value > 0.5
        loc = tf.where(done, loc, mean)
        log_scale = tf.where(done, log_scale, 0.5 * tf.math.log(variance + self._epsilon))
        if update:
            weights.loc.assign(tf.stop_gradient(loc))
            weights.log_scale.assign(tf.stop_gradient(log_scale))
            weights.initialized.assign(tf.ones([], weights.initialized.dtype))
        return loc, log_scale
