"""The squeeze of Real NVP's multi-scale architecture: space to depth, a permutation of the entries."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import checks

__all__ = [
    "Squeeze",
]

tfb = tfp.bijectors


class Squeeze(tfb.Bijector):
    """Space to depth: each `f x f` block of pixels becomes one pixel with `f^2` times the channels [1].

    For an event `x` of shape `[H, W, C]` (any batch axes before it) and `f = factor`:

    ```none
    forward:  y[i, j, (a f + b) C + c] = x[f i + a, f j + b, c]     [H, W, C] -> [H/f, W/f, f^2 C]
    inverse:  x[f i + a, f j + b, c] = y[i, j, (a f + b) C + c]     [H/f, W/f, f^2 C] -> [H, W, C]
    log|det dy/dx| = log|det dx/dy| = 0                             (a permutation of the entries)
    ```

    with `0 <= a, b < f`: the channel order of `tf.nn.space_to_depth` (NHWC). The squeeze trades
    spatial size for channels, so that the couplings after it can use channel-wise masks, and
    half the channels can be factored out (`FactorOut`). TFP's generative direction is
    `forward`, so a flow that squeezes on its way from data to latent holds
    `tfb.Invert(Squeeze())`, as TFP's `Glow` holds its `Expand`.

    Args:
      factor: The block size `f`, at least 2. Defaults to 2.
      validate_args: Whether to check inputs are finite at run time. Defaults to `False`.
      name: Name of the bijector. Defaults to `"squeeze"`.

    Raises:
      ValueError: If `factor < 2`; at call time, if the input is not of rank >= 3 with static
        event dimensions, or its height or width (forward) or channels (inverse) are not
        divisible by `f` (`f^2`).

    Example:

    ```python
    squeeze = Squeeze()
    y = squeeze.forward(tf.zeros([5, 8, 8, 1]))  # [5, 4, 4, 4]
    squeeze.inverse(y).shape                     # [5, 8, 8, 1]
    ```

    References:
      [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real
          NVP. ICLR 2017, section 3.6. https://arxiv.org/abs/1605.08803
    """

    def __init__(self, factor: int = 2, *, validate_args: bool = False, name: str = "squeeze") -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._factor = checks.integer("factor", factor, low=2)
            super().__init__(
                forward_min_event_ndims=3,
                is_constant_jacobian=True,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @classmethod
    def _parameter_properties(cls, dtype: Any, num_classes: Any = None) -> dict[str, Any]:
        return dict()

    @property
    def factor(self) -> int:
        return self._factor

    # -- shapes -------------------------------------------------------------------------

    def _squeezed(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        h, w, c = shape
        f = self._factor
        if h % f or w % f:
            raise ValueError(
                f"{self.name}: event shape [{h}, {w}, {c}] has a height or width not divisible by "
                f"{f}; expected [H, W, C] with H and W multiples of {f}"
            )
        return h // f, w // f, c * f * f

    def _unsqueezed(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        h, w, c = shape
        f = self._factor
        if c % (f * f):
            raise ValueError(
                f"{self.name}: event shape [{h}, {w}, {c}] has {c} channels, not divisible by {f * f}; "
                f"expected [H, W, C] with C a multiple of {f * f} to undo the squeeze"
            )
        return h * f, w * f, c // (f * f)

    def _forward_event_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return _map_static(input_shape, self._squeezed)

    def _inverse_event_shape(self, output_shape: tf.TensorShape) -> tf.TensorShape:
        return _map_static(output_shape, self._unsqueezed)

    def _forward_event_shape_tensor(self, input_shape: tf.Tensor) -> tf.Tensor:
        f = self._factor
        return tf.concat([input_shape[:-3], input_shape[-3:-1] // f, input_shape[-1:] * f * f], axis=0)

    def _inverse_event_shape_tensor(self, output_shape: tf.Tensor) -> tf.Tensor:
        f = self._factor
        return tf.concat([output_shape[:-3], output_shape[-3:-1] * f, output_shape[-1:] // (f * f)], axis=0)

    def _event(self, x: tf.Tensor) -> tuple[int, int, int]:
        if x.shape.rank is None or x.shape.rank < 3 or None in x.shape[-3:]:
            raise ValueError(
                f"{self.name} needs a static event shape [H, W, C] after any batch axes; got input shape {x.shape}"
            )
        if self.validate_args:
            tf.debugging.assert_all_finite(x, message=f"{self.name}: input has NaN or infinite values")
        return tuple(int(n) for n in x.shape[-3:])

    # -- the transform ------------------------------------------------------------------

    def _forward(self, x: tf.Tensor) -> tf.Tensor:
        h, w, c = self._squeezed(self._event(x))
        f, batch, b = self._factor, tf.shape(x)[:-3], x.shape.rank - 3
        # [..., H/f, a, W/f, b, C] -> [..., H/f, W/f, a, b, C] -> [..., H/f, W/f, f^2 C]
        blocks = tf.reshape(x, tf.concat([batch, [h, f, w, f, c // (f * f)]], axis=0))
        blocks = tf.transpose(blocks, [*range(b), b, b + 2, b + 1, b + 3, b + 4])
        return tf.reshape(blocks, tf.concat([batch, [h, w, c]], axis=0))

    def _inverse(self, y: tf.Tensor) -> tf.Tensor:
        h, w, c = self._unsqueezed(self._event(y))
        f, batch, b = self._factor, tf.shape(y)[:-3], y.shape.rank - 3
        # [..., H/f, W/f, a, b, C] -> [..., H/f, a, W/f, b, C] -> [..., H, W, C]
        blocks = tf.reshape(y, tf.concat([batch, [h // f, w // f, f, f, c]], axis=0))
        blocks = tf.transpose(blocks, [*range(b), b, b + 2, b + 1, b + 3, b + 4])
        return tf.reshape(blocks, tf.concat([batch, [h, w, c]], axis=0))

    def _forward_log_det_jacobian(self, x: tf.Tensor) -> tf.Tensor:
        return tf.zeros(tf.shape(x)[:-3], x.dtype)

    def _inverse_log_det_jacobian(self, y: tf.Tensor) -> tf.Tensor:
        return tf.zeros(tf.shape(y)[:-3], y.dtype)


def _map_static(shape: tf.TensorShape, fn: Any) -> tf.TensorShape:
    """`fn` applied to the last three dimensions of a static shape (unknown ones stay unknown)."""
    shape = tf.TensorShape(shape)
    if shape.rank is None or shape.rank < 3:
        return shape
    event = shape[-3:]
    if not event.is_fully_defined():
        return shape[:-3].concatenate([None, None, None])
    return shape[:-3].concatenate(fn(tuple(int(n) for n in event)))
