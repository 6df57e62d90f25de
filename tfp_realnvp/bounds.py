"""Bounding the log-scale of an affine coupling.

A conditioner's raw output `r` becomes the log-scale `s` through one of:

- `"tanh"` (default): `s = c * tanh(r)` with a learned per-dimension scale `c` (initialised
  to 1), as in Real NVP [1]; `|s| <= |c|`, so one layer cannot blow up early in training.
- `"sigmoid"`: Glow's `s = log(sigmoid(r + 2))` [2]; `s < 0` (contracting only), and a fresh
  layer scales by `sigmoid(2) ~ 0.88`.
- `"unbounded"`: `s = r`, the plain `exp` parameterisation.

References:
  [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
      ICLR 2017. https://arxiv.org/abs/1605.08803
  [2] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
      Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from tfp_realnvp.choices import LOG_SCALE_BOUNDS

__all__ = [
    "LOG_SCALE_BOUNDS",
    "TanhLogScale",
    "make_log_scale_bound",
]


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class TanhLogScale(keras.layers.Layer):
    """`s = scale * tanh(raw)`, with a learned `scale` per event entry, initialised to 1.

    Args:
      event_ndims: Number of trailing axes of `raw` that form the event; `scale` has the
        event's shape. Defaults to 1.
      **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, event_ndims: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_ndims = int(event_ndims)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.scale = self.add_weight(
            name="scale",
            shape=tuple(input_shape[len(input_shape) - self.event_ndims :]),
            initializer="ones",
        )

    def call(self, raw: tf.Tensor) -> tf.Tensor:
        return self.scale * tf.tanh(raw)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "event_ndims": self.event_ndims}


def _glow_sigmoid(raw: tf.Tensor) -> tf.Tensor:
    return tf.math.log_sigmoid(raw + 2.0)


def _identity(raw: tf.Tensor) -> tf.Tensor:
    return raw


def make_log_scale_bound(
    bound: str, *, event_ndims: int, dtype: Any = None
) -> tuple[Callable[[tf.Tensor], tf.Tensor], keras.layers.Layer | None]:
    """Returns `(fn, layer)`: the bounding function and the Keras layer holding its weights, if any.

    Args:
      bound: One of `LOG_SCALE_BOUNDS`.
      event_ndims: Number of trailing axes of the raw log-scale that form the event.
      dtype: The dtype (or Keras dtype policy) of the layer's weights, which must be the
        input's: a float64 input needs a float64 scale. Defaults to `None`: Keras's default
        float type, float32.

    Raises:
      ValueError: If `bound` is not one of `LOG_SCALE_BOUNDS`.
    """
    if bound == "tanh":
        layer = TanhLogScale(event_ndims=event_ndims, dtype=dtype, name="tanh_log_scale")
        return layer, layer
    if bound == "sigmoid":
        return _glow_sigmoid, None
    if bound == "unbounded":
        return _identity, None
    raise ValueError(f"log_scale_bound must be one of {LOG_SCALE_BOUNDS}; got {bound!r}")
