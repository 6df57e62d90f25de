"""Batch normalization as a bijector with running statistics, for Keras 3 (Real NVP's appendix E)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from tfp_realnvp import checks
from tfp_realnvp.bijectors.channels import ChannelAffine, channel_moments

__all__ = [
    "BatchNormalization",
    "BatchNormalizationWeights",
]


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class BatchNormalizationWeights(keras.layers.Layer):
    """The weights of a `BatchNormalization` bijector, per channel: `log_gamma`, `beta` (trained),
    `moving_mean`, `moving_variance` (running statistics, not trained; saved with the model)."""

    def __init__(self, channels: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = int(channels)
        shape = (self.channels,)
        self.log_gamma = self.add_weight(name="log_gamma", shape=shape, initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=shape, initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=shape, initializer="ones", trainable=False
        )
        self.built = True

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "channels": self.channels}


class BatchNormalization(ChannelAffine):
    """Batch normalization [2] as a bijector with a log-determinant, as in Real NVP [1] (appendix E).

    Statistics are per channel (the last axis of the event), over the batch and the other event
    axes. With `(mu, var)` the statistics, `gamma = exp(log_gamma)` and `beta` learned per
    channel, `eps = epsilon`, and `N` the number of event entries per channel (`H * W` for an
    image `[H, W, C]`, 1 for a vector):

    ```none
    inverse (data y -> latent x):  x = (y - mu) / sqrt(var + eps) * gamma + beta
    forward (latent x -> data y):  y = (x - beta) / gamma * sqrt(var + eps) + mu
    log|det dx/dy| =  N * sum_c [log gamma_c - 0.5 log(var_c + eps)]    (inverse_log_det_jacobian)
    log|det dy/dx| = -log|det dx/dy|                                    (forward_log_det_jacobian)
    ```

    TFP's `forward` is the generative direction, so the normalisation is `inverse`, the map
    `log_prob` applies to data (as in `tfb.BatchNormalization`). The keyword `training`
    (`condition_keys`; `FlowModel` passes Keras's flag through `tfp_realnvp.routing`) chooses
    the statistics:

    - `training=True`: `inverse` and its log-det use the batch's statistics (the gradient flows
      through them), and `inverse` updates the running ones,
      `moving <- momentum * moving + (1 - momentum) * batch`;
    - `training=False` (the default: `log_prob`, `evaluate`, sampling, the export): the running
      statistics, which nothing changes; `forward` and `inverse` are then exact inverses and
      the log-det is the same for every example.

    `forward` always uses the running statistics (a latent batch says nothing about the data's).
    So in training mode `forward` does not undo `inverse`, as with `tfb.BatchNormalization`.
    The log-det in training mode is the paper's: that of the normalisation with the batch's
    statistics held fixed.

    The weights live in a Keras layer that `keras_layers` lists, so a `FlowModel` trains the
    scale and shift, and saves and restores the running statistics with the model.

    Args:
      event_shape: The event shape, e.g. `[8, 8, 1]` or `[D]`; its last axis holds the
        channels.
      momentum: Weight of the old running statistics at each update. Defaults to 0.99.
      epsilon: Added to the variance. Defaults to 1e-4.
      dtype: `"float32"` or `"float64"`, the weights' and inputs' dtype. Defaults to
        `"float32"`.
      validate_args: Whether to check inputs are finite at run time. Defaults to `False`.
      name: Name of the bijector (and prefix of its layer's). Defaults to
        `"batch_normalization"`.

    Raises:
      ValueError: For an empty or non-positive `event_shape`, `momentum` outside `[0, 1)` or
        `epsilon <= 0`; at call time, for an input whose trailing axes are not the event shape.

    Example:

    ```python
    bn = BatchNormalization(event_shape=(4, 4, 2))
    y = tf.random.normal([16, 4, 4, 2]) * 3.0 + 1.0
    x = bn.inverse(y, training=True)     # normalised with the batch's statistics
    bn.inverse_log_det_jacobian(y, event_ndims=3)  # [16], from the running statistics
    ```

    References:
      [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real
          NVP. ICLR 2017. https://arxiv.org/abs/1605.08803
      [2] Sergey Ioffe, Christian Szegedy. Batch normalization: accelerating deep network
          training by reducing internal covariate shift. ICML 2015.
          https://arxiv.org/abs/1502.03167
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        momentum: float = 0.99,
        epsilon: float = 1e-4,
        dtype: str = "float32",
        validate_args: bool = False,
        name: str = "batch_normalization",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            event_shape = checks.event_shape(event_shape, example="[8, 8, 1]")
            self._momentum = checks.number("momentum", momentum, low=0, below=1)
            self._epsilon = checks.number("epsilon", epsilon, positive=True)
            weights = BatchNormalizationWeights(event_shape[-1], dtype=dtype, name=f"{name.rstrip('/')}_weights")
            super().__init__(event_shape, weights, parameters=parameters, validate_args=validate_args, name=name)

    @property
    def momentum(self) -> float:
        return self._momentum

    @property
    def epsilon(self) -> float:
        return self._epsilon

    @property
    def moving_mean(self) -> keras.Variable:
        return self._layer.moving_mean

    @property
    def moving_variance(self) -> keras.Variable:
        return self._layer.moving_variance

    def _loc_and_log_scale(self, y: tf.Tensor, training: bool, update: bool) -> tuple[tf.Tensor, tf.Tensor]:
        # x = (y - mu) / sqrt(var + eps) * gamma + beta = (y - loc) * exp(-log_scale) with
        # log_scale = 0.5 log(var + eps) - log gamma and loc = mu - beta * exp(log_scale).
        weights = self._layer
        if training:
            mean, variance = channel_moments(y)
            if update:
                m = self._momentum
                weights.moving_mean.assign(m * weights.moving_mean.value + (1.0 - m) * tf.stop_gradient(mean))
                weights.moving_variance.assign(
                    m * weights.moving_variance.value + (1.0 - m) * tf.stop_gradient(variance))
        else:
            mean, variance = weights.moving_mean.value, weights.moving_variance.value
        log_scale = 0.5 * tf.math.log(variance + self._epsilon) - weights.log_gamma.value
        return mean - weights.beta.value * tf.exp(log_scale), log_scale
