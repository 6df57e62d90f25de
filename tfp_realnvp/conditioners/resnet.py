"""The convolutional residual network of Real NVP's image couplings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import checks

__all__ = [
    "ResNetConditioner",
]

NORMALIZATIONS: tuple[str | None, ...] = (None, "batch")


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ResNetConditioner(keras.layers.Layer):
    """A convolutional residual network that outputs the shift and log-scale of an image coupling [1].

    The input is the coupling's masked image `where(mask, x, 0)` of shape `[..., H, W, C]`
    (checkerboard or channel-wise masks), optionally with the mask itself and a context vector
    (each of its features a constant map) appended as more channels. With `conv` a `kernel_size` convolution with "same" padding, `a` the activation
    and `n` the normalization (batch normalization, or none):

    ```none
    h_0     = conv_in([x, mask, context])                         (num_filters channels)
    h_{b+1} = h_b + conv(a(n(conv(a(n(h_b))))))                   (num_blocks residual blocks)
    (shift, log_scale) = split(conv_out(a(n(h_B))))               (2 * output_channels channels)
    ```

    `conv_out`'s kernel and bias start at zero, so a new coupling is the identity map. Any
    number of batch axes is accepted; they are flattened into one for the convolutions.

    With `normalization="batch"` the network takes Keras's `training` flag, and with a
    `context_size` a `context` (both listed in `condition_keys`), which `AffineCoupling` passes
    on: batch statistics in training, running ones otherwise.

    Args:
      num_filters: Channels of the hidden feature maps. Defaults to 64.
      num_blocks: Number of residual blocks. Defaults to 2.
      kernel_size: Size of the square convolution kernels. Defaults to 3.
      output_channels: Channels of `shift` and `log_scale`. Defaults to `None`: the input's.
      mask: A boolean array `[H, W, m]` appended to the input as `m` constant channels (1
        where the coupling leaves the entry unchanged), so the network knows which entries it
        sees; a convolution cannot tell a checkerboard's squares apart otherwise. Defaults to
        `None` (nothing appended).
      context_size: Features of an optional conditioning vector passed as `context=` at call
        time (`batch_shape + [context_size]`, or a shape that broadcasts to it, such as one
        row for all), appended to the input as `context_size` constant channels. Defaults to 0
        (no context).
      normalization: `None` or `"batch"` (Keras's `BatchNormalization` before each
        activation). Defaults to `None`.
      activation: Activation of the hidden layers. Defaults to `"relu"`.
      seed: Seed of the hidden kernels' initializer (convolution `i` uses `seed + i`).
        Defaults to `None` (unseeded).
      **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Raises:
      ValueError: For non-positive sizes, an unknown `normalization`, (at build) an input that
        is not `[..., H, W, C]` or a mask of another height and width, or (at call) a missing
        context when `context_size` is set.

    Example:

    ```python
    conditioner = ResNetConditioner(32, num_blocks=1, mask=checkerboard_mask((8, 8, 1)))
    shift, log_scale = conditioner(tf.zeros([10, 8, 8, 1]))  # both [10, 8, 8, 1], all zero
    ```

    References:
      [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real
          NVP. ICLR 2017, section 4.1. https://arxiv.org/abs/1605.08803
      [2] Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun. Identity mappings in deep
          residual networks. ECCV 2016. https://arxiv.org/abs/1603.05027
    """

    def __init__(
        self,
        num_filters: int = 64,
        num_blocks: int = 2,
        *,
        kernel_size: int = 3,
        output_channels: int | None = None,
        mask: np.ndarray | Sequence[Any] | None = None,
        context_size: int = 0,
        normalization: str | None = None,
        activation: str = "relu",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for label, value, low in (("num_filters", num_filters, 1), ("num_blocks", num_blocks, 0),
                                  ("kernel_size", kernel_size, 1), ("context_size", context_size, 0)):
            checks.integer(label, value, low=low)
        if output_channels is not None:
            checks.integer("output_channels", output_channels, low=1)
        checks.one_of("normalization", normalization, NORMALIZATIONS)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.ndim != 3:
                raise ValueError(f"mask must be a boolean array [H, W, m]; got shape {mask.shape}")
        self.num_filters = int(num_filters)
        self.num_blocks = int(num_blocks)
        self.kernel_size = int(kernel_size)
        self.output_channels = None if output_channels is None else int(output_channels)
        self.mask = mask
        self.context_size = int(context_size)
        self.normalization = normalization
        self.activation = keras.activations.get(activation)
        self._activation_name = activation
        self.seed = seed
        self._convs: list[keras.layers.Conv2D] = []
        self._norms: list[keras.layers.Layer] = []

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """`"context"` with a `context_size`, `"training"` with batch normalization."""
        return ("context",) * bool(self.context_size) + ("training",) * (self.normalization == "batch")

    def _conv(self, filters: int, *, zero: bool = False) -> keras.layers.Conv2D:
        index = len(self._convs)
        if zero:
            init: Any = "zeros"
        else:
            init = keras.initializers.HeNormal(seed=None if self.seed is None else self.seed + index)
        conv = keras.layers.Conv2D(
            filters, self.kernel_size, padding="same", kernel_initializer=init, bias_initializer="zeros",
            dtype=self.dtype_policy, name="shift_and_log_scale" if zero else f"conv_{index}",
        )
        self._convs.append(conv)
        return conv

    def _norm(self) -> keras.layers.Layer | None:
        if self.normalization is None:
            return None
        norm = keras.layers.BatchNormalization(dtype=self.dtype_policy, name=f"batch_norm_{len(self._norms)}")
        self._norms.append(norm)
        return norm

    def build(self, input_shape: Sequence[int | None]) -> None:
        if len(input_shape) < 3 or None in tuple(input_shape[-3:]):
            raise ValueError(f"ResNetConditioner needs inputs [..., H, W, C] with static H, W, C; got {input_shape}")
        self._event_shape = tuple(int(n) for n in input_shape[-3:])
        h, w, c = self._event_shape
        if self.mask is not None and self.mask.shape[:2] != (h, w):
            raise ValueError(f"mask of shape {self.mask.shape} does not match the input's height and width {h}x{w}")
        extra = (0 if self.mask is None else self.mask.shape[-1]) + self.context_size
        self._out_channels = self.output_channels or c
        # Flat lists (what Keras tracks and saves): convolution 0 reads the input, 2b+1 and
        # 2b+2 form block b, the last writes the output; normalization i precedes convolution i+1.
        hidden = (None, h, w, self.num_filters)
        self._conv(self.num_filters).build((None, h, w, c + extra))
        for _ in range(2 * self.num_blocks):
            norm = self._norm()
            if norm is not None:
                norm.build(hidden)
            self._conv(self.num_filters).build(hidden)
        norm = self._norm()
        if norm is not None:
            norm.build(hidden)
        self._conv(2 * self._out_channels, zero=True).build(hidden)

    def _activate(self, i: int, h: tf.Tensor, training: bool | None) -> tf.Tensor:
        """Normalization `i` (if any), then the activation."""
        return self.activation(self._norms[i](h, training=training) if self._norms else h)

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None,
             training: bool | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        h_size, w_size, c = self._event_shape
        batch_shape = tf.shape(x)[:-3]
        h = tf.reshape(x, [-1, h_size, w_size, c])
        if self.mask is not None:
            mask = tf.cast(self.mask, h.dtype)[None]
            h = tf.concat([h, tf.tile(mask, [tf.shape(h)[0], 1, 1, 1])], axis=-1)
        if self.context_size:
            if context is None:
                raise ValueError(f"this conditioner was built with context_size={self.context_size}; "
                                 "pass context= with that many features")
            # Broadcast against the batch (one row may serve all), then one constant map per feature.
            size = self.context_size
            context = tf.broadcast_to(tf.cast(context, h.dtype), tf.concat([batch_shape, [size]], 0))
            context = tf.tile(tf.reshape(context, [-1, 1, 1, size]), [1, h_size, w_size, 1])
            h = tf.concat([h, context], axis=-1)
        h = self._convs[0](h)
        for b in range(self.num_blocks):
            r = self._convs[2 * b + 1](self._activate(2 * b, h, training))
            h = h + self._convs[2 * b + 2](self._activate(2 * b + 1, r, training))
        out = self._convs[-1](self._activate(-1, h, training))
        shift, log_scale = tf.split(out, 2, axis=-1)
        out_shape = tf.concat([batch_shape, [h_size, w_size, self._out_channels]], axis=0)
        return tf.reshape(shift, out_shape), tf.reshape(log_scale, out_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_filters=self.num_filters,
            num_blocks=self.num_blocks,
            kernel_size=self.kernel_size,
            output_channels=self.output_channels,
            mask=None if self.mask is None else self.mask.tolist(),
            context_size=self.context_size,
            normalization=self.normalization,
            activation=self._activation_name,
            seed=self.seed,
        )
        return config
