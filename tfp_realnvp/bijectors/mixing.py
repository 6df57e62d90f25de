"""Learned invertible mixing: an LU-parameterised linear map over the event's last axis [1].

With `W = P L (U + diag(sign * exp(log_s)))` (`P` a fixed permutation, `L` unit lower triangular,
`U` strictly upper triangular, all learned but `P` and `sign`), applied to the last axis at every
other position of the event (`n` positions: 1 for a vector, `H * W` for an image):

```none
forward:  y = x W^T                          (per position)
inverse:  x = y W^{-T}
log|det dy/dx| = n * sum(log_s),   log|det dx/dy| = -n * sum(log_s)
```

For a vector event `[D]` this is the LU-decomposed linear map between couplings
(`real_nvp(..., permutation="lu")`); for an image `[H, W, C]` it is Glow's invertible 1x1
convolution, LU-parameterised (`real_nvp_multiscale(..., mixing="1x1")`). At initialisation
`L = I`, `U = 0`, `log_s = 0`: `W = P`, a permutation drawn from `seed`.

References:
  [1] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
      Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import checks

__all__ = [
    "LUMixing",
    "LUWeights",
    "check_image_mixing",
    "check_vector_mixing",
]

tfb = tfp.bijectors


def check_vector_mixing(event_shape: Sequence[int]) -> None:
    """Raises ValueError unless `event_shape` is a vector `[D]`: what `permutation="lu"` mixes."""
    if len(tuple(event_shape)) != 1:
        raise ValueError(
            f"permutation='lu' mixes the entries of a vector event [D]; got event shape {list(event_shape)} "
            "(for images use real_nvp_multiscale(..., mixing='1x1'), the 1x1 convolution over channels)"
        )


def check_image_mixing(event_shape: Sequence[int]) -> None:
    """Raises ValueError unless `event_shape` is an image `[H, W, C]`: what `mixing="1x1"` mixes."""
    if len(tuple(event_shape)) != 3:
        raise ValueError(
            f"mixing='1x1' is Glow's 1x1 convolution over the channels of an image event [H, W, C]; got event "
            f"shape {list(event_shape)} (for vectors use real_nvp(..., permutation='lu'))"
        )


def _strict(size: int, lower: bool) -> np.ndarray:
    ones = np.ones((size, size), np.float32)
    return np.tril(ones, -1) if lower else np.triu(ones, 1)


def _unit_triangular_inverse(strict: tf.Tensor, size: int) -> tf.Tensor:
    """`(I + N)^{-1}` for a strictly triangular `N`: `prod_j (I + (-N)^(2^j))`, exact as `N^size = 0`.

    Matrix products only, so every exporter converts it (tf2onnx has no triangular solve).
    """
    eye = tf.eye(size, dtype=strict.dtype)
    inverse, power = eye, -strict
    for _ in range(max(size - 1, 0).bit_length()):
        inverse = tf.matmul(inverse, eye + power)
        power = tf.matmul(power, power)
    return inverse


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class LUWeights(keras.layers.Layer):
    """The weights of `W = P L (U + diag(sign * exp(log_s)))` over `size` channels.

    Trainable: `lower` and `upper` (masked to their strict triangles) and `log_scale`; not
    trainable: `permutation` (the matrix `P`, drawn from `seed`) and `sign` (+1). Saved with the model.

    Args:
      size: Number of channels (the event's last axis).
      seed: Seed of the permutation `P`; `None` for the identity. Defaults to 0.
      **kwargs: Passed to `keras.layers.Layer` (`name`, `dtype`).
    """

    def __init__(self, size: int, *, seed: int | None = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = checks.integer("size", size, low=1)
        self.seed = seed

    def build(self, input_shape: Any = None) -> None:
        c = self.size
        order = np.arange(c) if self.seed is None else np.random.default_rng([self.seed, 3]).permutation(c)
        self.permutation = self.add_weight(name="permutation", shape=(c, c), initializer="zeros", trainable=False)
        self.permutation.assign(np.eye(c, dtype=np.float32)[order].astype(self.variable_dtype))
        self.sign = self.add_weight(name="sign", shape=(c,), initializer="ones", trainable=False)
        self.lower = self.add_weight(name="lower", shape=(c, c), initializer="zeros")
        self.upper = self.add_weight(name="upper", shape=(c, c), initializer="zeros")
        self.log_scale = self.add_weight(name="log_scale", shape=(c,), initializer="zeros")

    def factors(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """`(P, strict L, D = sign * exp(log_s), strict U)` as tensors."""
        dtype = self.log_scale.dtype
        lower = tf.convert_to_tensor(self.lower) * _strict(self.size, True).astype(dtype)
        upper = tf.convert_to_tensor(self.upper) * _strict(self.size, False).astype(dtype)
        diagonal = tf.convert_to_tensor(self.sign) * tf.exp(tf.convert_to_tensor(self.log_scale))
        return tf.convert_to_tensor(self.permutation), lower, diagonal, upper

    def matrix(self) -> tf.Tensor:
        """`W = P (I + L) (D + U)`."""
        p, lower, diagonal, upper = self.factors()
        eye = tf.eye(self.size, dtype=p.dtype)
        return tf.matmul(p, tf.matmul(eye + lower, tf.linalg.diag(diagonal) + upper))

    def inverse_matrix(self) -> tf.Tensor:
        """`W^{-1} = (I + D^{-1} U)^{-1} D^{-1} (I + L)^{-1} P^T`."""
        p, lower, diagonal, upper = self.factors()
        inv_lower = _unit_triangular_inverse(lower, self.size)
        inv_upper = _unit_triangular_inverse(upper / diagonal[:, None], self.size)
        return tf.matmul(inv_upper / diagonal[None, :], tf.matmul(inv_lower, p, transpose_b=True))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "seed": self.seed}


class LUMixing(tfb.Bijector):
    """A learned LU-parameterised linear map over the event's last axis, as a TFP bijector [1].

    ```none
    forward:  y = x W^T,   inverse:  x = y W^{-T}         (W = P (I + L) (D + U), per position)
    log|det dy/dx| = n * sum(log|D|) = -log|det dx/dy|     (n: positions, the event's size / C)
    ```

    For a vector event `[D]`, the LU-decomposed linear map between couplings; for an image
    `[H, W, C]`, Glow's invertible 1x1 convolution. `W` starts as a permutation drawn from `seed`.
    Its weights live in an `LUWeights` Keras layer listed in `keras_layers`, so a `FlowModel`
    tracks, trains, saves and exports them. The inverse uses `W^{-1}` from the LU factors in
    matrix products only (no triangular solve, which tf2onnx does not convert).

    Args:
      event_shape: The event shape, `[D]` or `[H, W, C]` (any rank >= 1: the last axis is mixed).
      seed: Seed of the initial permutation; `None` for the identity. Defaults to 0.
      dtype: `"float32"` or `"float64"`. Defaults to `"float32"`.
      validate_args: Whether to check inputs are finite at run time. Defaults to `False`.
      name: Name of the bijector. Defaults to `"lu_mixing"`.

    Raises:
      ValueError: For an event shape that is not positive integers, or an unknown dtype.

    Example:

    ```python
    mixing = LUMixing([4], seed=1)
    y = mixing.forward(tf.random.normal([3, 4]))  # a permutation of the entries, at first
    ```

    References:
      [1] Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
          Convolutions. NeurIPS 2018. https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        seed: int | None = 0,
        dtype: str = "float32",
        validate_args: bool = False,
        name: str = "lu_mixing",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._event = checks.event_shape(event_shape)
            self._positions = math.prod(self._event[:-1])
            self._weights = LUWeights(self._event[-1], seed=seed, dtype=checks.dtype(dtype), name=f"{name.rstrip('/')}_weights")
            self._weights.build()
            self._layer_variables = tuple(w.value for w in self._weights.weights)
            super().__init__(forward_min_event_ndims=len(self._event), validate_args=validate_args,
                             parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype: Any, num_classes: Any = None) -> dict[str, Any]:
        return dict()

    @property
    def keras_layers(self) -> tuple[keras.layers.Layer, ...]:
        """The `LUWeights` layer; a `keras.Model` must track it (see `tfp_realnvp.tracking`)."""
        return (self._weights,)

    @property
    def weights_layer(self) -> LUWeights:
        return self._weights

    def _check(self, x: tf.Tensor) -> tf.Tensor:
        if self.validate_args:
            x = tf.debugging.assert_all_finite(x, message=f"{self.name}: input has NaN or infinite values")
        return x

    def _log_det(self, x: tf.Tensor) -> tf.Tensor:
        # Broadcast to the batch explicitly: a scalar constant log-det is what LiteRT's converter
        # mishandles (see the README's exports).
        total = self._positions * tf.reduce_sum(tf.convert_to_tensor(self._weights.log_scale))
        batch_zeros = tf.reduce_sum(tf.zeros_like(x), axis=list(range(-len(self._event), 0)))
        return total + batch_zeros

    def _apply(self, x: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
        # One [n, C] x [C, C] product whatever the rank: what every exporter converts.
        x = self._check(x)
        rows = tf.matmul(tf.reshape(x, [-1, self._event[-1]]), matrix, transpose_b=True)
        return tf.reshape(rows, tf.shape(x))

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        return self._apply(x, self._weights.matrix())

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        return self._apply(y, self._weights.inverse_matrix())

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        return self._log_det(x)

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        return -self._log_det(y)
