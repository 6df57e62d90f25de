"""Conditioners: networks mapping the unchanged part of an event to `(shift, log_scale)`.

A conditioner is the only learned piece of an affine coupling. `AffineCoupling` accepts any
callable with the signature `conditioner(x_masked, **condition_kwargs) -> (shift, log_scale)`;
this module provides the Keras 3 layers the builders use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

__all__ = [
    "MLPConditioner",
]


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class MLPConditioner(keras.layers.Layer):
    """A multilayer perceptron that outputs the shift and log-scale of a coupling.

    The event part of the input (its last `event_ndims` axes) is flattened, passed through
    `len(hidden_units)` dense layers, and a final dense layer produces
    `2 * prod(output_shape)` values, split into `shift` and `log_scale`, each reshaped to
    `batch_shape + output_shape`. The final layer's kernel and bias start at zero, so a new
    coupling is the identity map (`shift = 0`, `log_scale = 0` before any bounding).

    Any number of batch axes is accepted (including none); they are flattened into one for a
    single matrix multiply per layer and restored afterwards.

    Args:
      hidden_units: Widths of the hidden dense layers, e.g. `(128, 128)`.
      output_shape: Event shape of `shift` and `log_scale`. Defaults to `None`: the same as
        the input's event shape (the masked-input convention of image couplings).
      event_ndims: Number of trailing input axes that form the event. Defaults to
        `len(output_shape)` when `output_shape` is given, else 1.
      activation: Activation of the hidden layers. Defaults to `"relu"`.
      context_size: Size of an optional conditioning vector passed as `context=` at call
        time (`batch_shape + [context_size]`, or any shape that broadcasts to it, such as one
        row for the whole batch) and concatenated to the flattened input. Defaults to 0 (no
        context).
      kernel_initializer: Initializer of the hidden kernels. Defaults to
        `"glorot_uniform"`.
      seed: Seed of the hidden kernels' initializer (layer `i` uses `seed + i`), so the same
        seed gives the same initial weights. Defaults to `None` (unseeded).
      **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`, ...).

    Raises:
      ValueError: If `hidden_units` holds a non-positive width, or `output_shape` a
        non-positive size.

    Example:

    ```python
    conditioner = MLPConditioner((64, 64), output_shape=(3,))
    shift, log_scale = conditioner(tf.zeros([10, 2]))  # both [10, 3], all zero
    ```
    """

    def __init__(
        self,
        hidden_units: Sequence[int],
        *,
        output_shape: Sequence[int] | None = None,
        event_ndims: int | None = None,
        activation: str = "relu",
        context_size: int = 0,
        kernel_initializer: str = "glorot_uniform",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        hidden_units = tuple(int(u) for u in hidden_units)
        if any(u <= 0 for u in hidden_units):
            raise ValueError(f"hidden_units must be positive widths; got {hidden_units}")
        if output_shape is not None:
            output_shape = tuple(int(n) for n in output_shape)
            if any(n <= 0 for n in output_shape):
                raise ValueError(f"output_shape must hold positive sizes; got {output_shape}")
        if event_ndims is None:
            event_ndims = len(output_shape) if output_shape is not None else 1
        self.hidden_units = hidden_units
        self.target_shape = output_shape
        self.event_ndims = int(event_ndims)
        self.activation = activation
        self.context_size = int(context_size)
        self.kernel_initializer = kernel_initializer
        self.seed = seed
        self._hidden = [
            keras.layers.Dense(
                units,
                activation=activation,
                kernel_initializer=_seeded(kernel_initializer, None if seed is None else seed + i),
                dtype=self.dtype_policy,
                name=f"hidden_{i}",
            )
            for i, units in enumerate(hidden_units)
        ]
        self._out = None

    @property
    def condition_keys(self) -> tuple[str, ...]:
        """`("context",)` when built with a `context_size`, else `()`."""
        return ("context",) if self.context_size else ()

    def build(self, input_shape: Sequence[int | None]) -> None:
        event_shape = tuple(input_shape[len(input_shape) - self.event_ndims :])
        if None in event_shape:
            raise ValueError(f"MLPConditioner needs a static event shape; got {event_shape}")
        self._in_size = math.prod(event_shape) + self.context_size
        self._out_shape = self.target_shape if self.target_shape is not None else event_shape
        self._out_size = math.prod(self._out_shape)
        width = self._in_size
        for layer in self._hidden:
            layer.build((None, width))
            width = layer.units
        self._out = keras.layers.Dense(
            2 * self._out_size,
            kernel_initializer="zeros",
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="shift_and_log_scale",
        )
        self._out.build((None, width))

    def call(self, x: tf.Tensor, context: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        batch_shape = tf.shape(x)[: -self.event_ndims]
        h = tf.reshape(x, [-1, self._in_size - self.context_size])
        if self.context_size:
            if context is None:
                raise ValueError(
                    f"this conditioner was built with context_size={self.context_size}; "
                    "pass context= with that many features"
                )
            # Broadcast against the batch, so one context row (or a [C] vector) serves every example.
            context = tf.broadcast_to(tf.cast(context, h.dtype), tf.concat([batch_shape, [self.context_size]], 0))
            h = tf.concat([h, tf.reshape(context, [-1, self.context_size])], axis=-1)
        for layer in self._hidden:
            h = layer(h)
        shift, log_scale = tf.split(self._out(h), 2, axis=-1)
        out_shape = tf.concat([batch_shape, self._out_shape], axis=0)
        return tf.reshape(shift, out_shape), tf.reshape(log_scale, out_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            hidden_units=list(self.hidden_units),
            output_shape=None if self.target_shape is None else list(self.target_shape),
            event_ndims=self.event_ndims,
            activation=self.activation,
            context_size=self.context_size,
            kernel_initializer=self.kernel_initializer,
            seed=self.seed,
        )
        return config


def _seeded(initializer: str, seed: int | None) -> keras.initializers.Initializer:
    initializer = keras.initializers.get(initializer)
    if seed is None:
        return initializer
    return initializer.__class__.from_config({**initializer.get_config(), "seed": seed})
