"""Bounding the log-scale of an affine coupling.

A conditioner's raw output `r` becomes the log-scale `s` through one of:

- `"tanh"` (default): `s = clip(c, -S, S) * tanh(r)` with a learned per-dimension scale `c`
  (initialised to 1), as in Real NVP [1]; `|s| <= min(|c|, S)`, so one layer cannot blow up
  early in training, nor later when `c` has grown.
- `"sigmoid"`: Glow's `s = max(log(sigmoid(r + 2)), -S)` [2]; `-S <= s < 0` (contracting
  only), and a fresh layer scales by `sigmoid(2) ~ 0.88`.
- `"unbounded"`: `s = r`, the plain `exp` parameterisation.

`S = MAX_LOG_SCALE = 4`: a bounded coupling scales an entry by at most `e^4 ~ 55` either way.
Why 4: `real_nvp`'s default eight couplings then scale an entry by at most `e^32 ~ 8e13`, so a
float32 input of magnitude 1e4 (`e^9.2`) stays below `e^41.2 ~ 8e17` and its square in the
Gaussian log-density below float32's largest number, `3.4e38 = (1.8e19)^2`. Without the cap a
learned `c` of 100 made `exp(s)` overflow float32 (`e^100 > 3.4e38`), and `x2 * exp(s)` was
`inf` (or `0 * inf = NaN`). The cap changes nothing for `|c| <= 4`; trained models here
end with `|c| ~ 1-2.5`.

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
    "MAX_LOG_SCALE",
    "TanhLogScale",
    "make_log_scale_bound",
]

MAX_LOG_SCALE = 4.0
"""The largest `|s|` the bounded choices give (`"tanh"`, `"sigmoid"`); see the module docstring."""


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class TanhLogScale(keras.layers.Layer):
    """`s = clip(scale, -MAX_LOG_SCALE, MAX_LOG_SCALE) * tanh(raw)`, with a learned `scale` per
    event entry, initialised to 1.

    The clip bounds `|s|` whatever `scale` has learned (`exp(s)` finite in float32); its
    gradient is 0 for `|scale| > MAX_LOG_SCALE`, where `raw` still learns.

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
        return tf.clip_by_value(self.scale, -MAX_LOG_SCALE, MAX_LOG_SCALE) * tf.tanh(raw)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "event_ndims": self.event_ndims}


def _glow_sigmoid(raw: tf.Tensor) -> tf.Tensor:
    # Glow's scale sigmoid(raw + 2) reaches 0 (an infinite inverse) as raw -> -inf; the floor keeps
    # exp(-s) <= e^MAX_LOG_SCALE.
    return tf.maximum(tf.math.log_sigmoid(raw + 2.0), -MAX_LOG_SCALE)


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
