"""The rational-quadratic spline coupling of Neural Spline Flows [1].

With `x1` the unchanged part of the event, `x2` the rest and `theta(x1)` the conditioner's
`3K - 1` parameters per transformed entry (`K` bin widths, `K` bin heights, `K - 1` interior knot
derivatives), each entry of `x2` goes through a monotone rational-quadratic spline `g` on
`[-B, B]` and the identity outside it:

```none
forward:   y1 = x1,   y2 = g(x2; theta(x1))
inverse:   x1 = y1,   x2 = g^{-1}(y2; theta(y1))
log|det dy/dx| = sum_i log g'(x2_i),   log|det dx/dy| = -sum_i log g'(x2_i)   (x2 = inverse(y)_2)

in bin k (x_k <= x < x_{k+1}, width w_k, height h_k, s_k = h_k / w_k, knot derivatives d_k, d_{k+1}),
with t = (x - x_k) / w_k:
  g(x)  = y_k + h_k (s_k t^2 + d_k t (1 - t)) / (s_k + (d_{k+1} + d_k - 2 s_k) t (1 - t))
  g'(x) = s_k^2 (d_{k+1} t^2 + 2 s_k t (1 - t) + d_k (1 - t)^2) / (s_k + (d_{k+1} + d_k - 2 s_k) t (1 - t))^2
```

References:
  [1] Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural Spline Flows.
      NeurIPS 2019. https://arxiv.org/abs/1906.04032
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfp_realnvp import checks
from tfp_realnvp.bijectors.coupling import Conditioner, Coupling

__all__ = [
    "MAX_BINS",
    "MIN_BIN_SIZE",
    "MAX_DERIVATIVE",
    "MIN_DERIVATIVE",
    "SplineCoupling",
    "rational_quadratic_spline",
]

MIN_BIN_SIZE = 1e-2
"""The smallest bin width and height, as a fraction of `2B`."""

MIN_DERIVATIVE = 1e-2
"""The smallest knot derivative."""

MAX_DERIVATIVE = 10.0
"""The largest knot derivative (a bin's own slope `h / w` still reaches ~90).

Why these bounds, not nflows' and zuko's `1e-3` with no cap: inside a bin `g'` can fall to
`s^2 min(d, s) / max(s, d)^2`, and a float32 inverse is off by `eps * B / g'`. Over 50,000 draws of
conditioner outputs of scale 1e6 (benchmarks/SPLINE_CHOICE.md), `x - g^{-1}(g(x))` reached 5.7
with `1e-3` and no cap, 0.84 with `1e-2` and a cap of 1e3, 0.008 with these."""
# Zero raw derivatives give d = MIN_DERIVATIVE + softplus(shift) = 1: with uniform bins, the identity.
MAX_BINS = 64
"""The most bins a spline takes (`MAX_BINS * MIN_BIN_SIZE < 1`)."""

_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _softplus(x: tf.Tensor) -> tf.Tensor:
    # log(1 + e^x) in ops every exporter knows (tf2onnx fails on Log1p; see the README's exports).
    return tf.maximum(x, 0.0) + tf.math.log(1.0 + tf.exp(-tf.abs(x)))


def _knots(sizes: tf.Tensor, bound: float) -> tuple[tf.Tensor, tf.Tensor]:
    """`(knots [.., K+1], bin sizes [.., K])` on `[-B, B]` from sizes summing to 1; the ends exact."""
    inner = 2.0 * bound * tf.cumsum(sizes[..., :-1], axis=-1) - bound
    ends = tf.ones_like(sizes[..., :1]) * bound
    knots = tf.concat([-ends, inner, ends], axis=-1)
    return knots, knots[..., 1:] - knots[..., :-1]


def rational_quadratic_spline(
    x: tf.Tensor, params: tf.Tensor, *, tail_bound: float, inverse: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """The monotone rational-quadratic spline [1] on `[-B, B]`, the identity outside, elementwise.

    Args:
      x: The input, any shape `S`.
      params: The unnormalised parameters, `S + [3K - 1]`: `K` bin widths and `K` bin heights
        (softmax-normalised, each at least `MIN_BIN_SIZE * 2B`), then the `K - 1` interior knot
        derivatives (`MIN_DERIVATIVE + softplus(raw + log(e^(1 - MIN_DERIVATIVE) - 1))`, so raw 0
        is the derivative 1, capped at `MAX_DERIVATIVE`). The end derivatives are 1: the tails join smoothly.
      tail_bound: `B`.
      inverse: Whether to apply `g^{-1}` instead of `g`.

    Returns:
      `(g(x), log g'(x))`, or `(g^{-1}(x), log g'(g^{-1}(x)))` with `inverse`, both of shape `S`.
    """
    num_bins = (params.shape[-1] + 1) // 3
    # One row per entry: softmax takes at most rank 5 on CPU, and exporters like rank 2 best.
    shape = tf.shape(x)
    x, params = tf.reshape(x, [-1]), tf.reshape(params, [-1, params.shape[-1]])
    raw_widths, raw_heights, raw_derivatives = tf.split(params, [num_bins, num_bins, num_bins - 1], axis=-1)
    spread = 1.0 - MIN_BIN_SIZE * num_bins
    x_knots, widths = _knots(MIN_BIN_SIZE + spread * tf.nn.softmax(raw_widths, axis=-1), tail_bound)
    y_knots, heights = _knots(MIN_BIN_SIZE + spread * tf.nn.softmax(raw_heights, axis=-1), tail_bound)
    derivatives = MIN_DERIVATIVE + _softplus(tf.minimum(raw_derivatives + _DERIVATIVE_SHIFT, MAX_DERIVATIVE))
    one = tf.ones_like(derivatives[..., :1])
    derivatives = tf.concat([one, derivatives, one], axis=-1)

    # Outside [-B, B] the identity; inside, the spline at the clipped input (finite everywhere, so
    # the branch tf.where drops passes a zero gradient, never a NaN).
    inside = tf.logical_and(x >= -tail_bound, x <= tail_bound)
    v = tf.clip_by_value(x, -tail_bound, tail_bound)[..., None]
    # The bin as a one-hot vector: 1 for every knot at or below v, minus the same shifted by one.
    # Comparisons and sums only, which every exporter converts (tf.searchsorted it may not).
    below = tf.cast(v >= (y_knots if inverse else x_knots)[..., :num_bins], x.dtype)
    in_bin = below - tf.concat([below[..., 1:], tf.zeros_like(below[..., :1])], axis=-1)

    def pick(values: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(in_bin * values, axis=-1)

    x_k, w, y_k, h = pick(x_knots[..., :-1]), pick(widths), pick(y_knots[..., :-1]), pick(heights)
    d_k, d_next = pick(derivatives[..., :-1]), pick(derivatives[..., 1:])
    v = v[..., 0]
    s = h / w
    curvature = d_k + d_next - 2.0 * s
    if inverse:
        # t solves a t^2 + b t + c = 0; the root in [0, 1], in the form that does not cancel [1].
        dy = v - y_k
        a = h * (s - d_k) + dy * curvature
        b = h * d_k - dy * curvature
        c = -s * dy
        root = tf.sqrt(tf.maximum(b * b - 4.0 * a * c, 0.0))
        t = tf.clip_by_value(2.0 * c / (-b - root), 0.0, 1.0)
        out = x_k + t * w
    else:
        t = tf.clip_by_value((v - x_k) / w, 0.0, 1.0)
    t_1t = t * (1.0 - t)
    denominator = s + curvature * t_1t
    if not inverse:
        out = y_k + h * (s * t * t + d_k * t_1t) / denominator
    numerator = s * s * (d_next * t * t + 2.0 * s * t_1t + d_k * (1.0 - t) * (1.0 - t))
    log_derivative = tf.math.log(numerator) - 2.0 * tf.math.log(denominator)
    out, log_derivative = tf.where(inside, out, x), tf.where(inside, log_derivative, tf.zeros([], x.dtype))
    return tf.reshape(out, shape), tf.reshape(log_derivative, shape)


class SplineCoupling(Coupling):
    """The rational-quadratic spline coupling of Neural Spline Flows [1], as a TFP bijector.

    With `x1` the unchanged part of the event, `x2` the rest and `theta(x1)` the conditioner's
    parameters, each entry of `x2` goes through its own monotone rational-quadratic spline `g`
    with `num_bins` bins on `[-B, B]` (`B = tail_bound`) and the identity outside:

    ```none
    forward:  y1 = x1,  y2 = g(x2; theta(x1))
    inverse:  x1 = y1,  x2 = g^{-1}(y2; theta(y1))
    log|det dy/dx| =  sum log g'(x2)      (forward_log_det_jacobian)
    log|det dx/dy| = -sum log g'(x2)      (inverse_log_det_jacobian, x2 the inverse's output)
    ```

    `g` is written out in `rational_quadratic_spline`. Its end derivatives are 1, so the tails
    join smoothly; a zero conditioner output gives uniform bins and derivatives 1, the identity
    (the `log(e^(1 - min) - 1)` shift of nflows and zuko); every bin is at least `1e-2 * 2B`
    wide and high and every knot derivative within `[1e-2, 10]`, which keeps float32 round trips
    (and values and gradients at knots, at the box's edge and far outside it) finite.

    The unchanged part is given by a count (`num_masked`, vector events, as `AffineCoupling`)
    or a boolean `mask` over an event of any rank. The conditioner's output is a tensor, or a
    tuple of tensors concatenated on the last axis (so the pair of an `MLPConditioner` or
    `ResNetConditioner` serves), of shape `batch + transformed_shape[:-1] + [m]` with
    `m >= transformed_shape[-1] * (3 * num_bins - 1)` (`params_size` gives the number); the first
    that many values of the last axis are the parameters, entry-major. The plumbing (split,
    conditioner once per call, routing of `context`, tracking, TFP's cache) is
    `tfp_realnvp.bijectors.coupling.Coupling`'s.

    Args:
      conditioner: A Keras 3 layer or any callable `conditioner(x1, **condition_kwargs)`.
      num_masked: Number of leading coordinates left unchanged (negative: trailing).
      mask: Boolean array over the event; True entries are left unchanged.
      event_shape: The event shape. Defaults to `None`: the mask's shape, or the first input's.
      num_bins: Number of bins `K`, in `[2, MAX_BINS]`. Defaults to 8.
      tail_bound: `B`, a finite number > 0: the spline acts on `[-B, B]`. Defaults to 3.0
        (data standardised to unit variance lies mostly inside).
      validate_args: Whether to check inputs are finite at run time. Defaults to `False`.
      name: Name of the bijector. Defaults to `"spline_coupling"`.

    Raises:
      ValueError: For `num_bins` outside `[2, MAX_BINS]`, a `tail_bound` that is not a finite number > 0, both or
        neither of `num_masked` and `mask`, a mask that leaves nothing to transform, or (at the
        first call) conditioner outputs too small for the parameters.
      TypeError: If `conditioner` is not callable.

    Example:

    ```python
    coupling = SplineCoupling(
        MLPConditioner((64,), output_shape=(SplineCoupling.params_size((1,), 8) // 2,)),
        num_masked=1, event_shape=(2,), num_bins=8)
    y = coupling.forward(tf.random.normal([5, 2]))
    ```

    References:
      [1] Conor Durkan, Artur Bekasov, Iain Murray, George Papamakarios. Neural Spline Flows.
          NeurIPS 2019. https://arxiv.org/abs/1906.04032
    """

    def __init__(
        self,
        conditioner: Conditioner,
        *,
        num_masked: int | None = None,
        mask: np.ndarray | Sequence[Any] | None = None,
        event_shape: Sequence[int] | None = None,
        num_bins: int = 8,
        tail_bound: float = 3.0,
        validate_args: bool = False,
        name: str = "spline_coupling",
    ) -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            # At most 1 / MIN_BIN_SIZE - 1 bins, so the minimum sizes leave room for the softmax's share.
            self._num_bins = checks.integer("num_bins", num_bins, low=2, high=MAX_BINS)
            self._tail_bound = checks.number("tail_bound", tail_bound, positive=True)
            super().__init__(conditioner, num_masked=num_masked, mask=mask, event_shape=event_shape,
                             validate_args=validate_args, parameters=parameters, name=name)

    @staticmethod
    def params_size(transformed_shape: Sequence[int], num_bins: int = 8) -> int:
        """The conditioner outputs' last-axis total: `transformed_shape[-1] * (3 * num_bins - 1)`."""
        return int(transformed_shape[-1]) * (3 * int(num_bins) - 1)

    @property
    def num_bins(self) -> int:
        return self._num_bins

    @property
    def tail_bound(self) -> float:
        return self._tail_bound

    def _map_parameters(self, outputs: Any, x_transformed: tf.Tensor) -> tf.Tensor:
        """The conditioner's output(s), concatenated on the last axis -> `transformed + [3K - 1]`."""
        values = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        transformed = tuple(self._plumbing.transformed_shape)
        expected = x_transformed.shape[:-1].concatenate([None])
        self._check_outputs(values, [f"output {i}" for i in range(len(values))], x_transformed, expected,
                            f"batch shape + {list(transformed[:-1])} + [m]")
        joined = values[0] if len(values) == 1 else tf.concat(values, axis=-1)
        per_entry = 3 * self._num_bins - 1
        needed = transformed[-1] * per_entry
        if joined.shape[-1] is not None and joined.shape[-1] < needed:
            raise ValueError(
                f"conditioner outputs hold {joined.shape[-1]} values on the last axis; expected at least {needed} "
                f"= {transformed[-1]} entries x (3 * num_bins - 1 = {per_entry}) parameters"
            )
        params = tf.reshape(joined[..., :needed],
                            tf.concat([tf.shape(x_transformed), [per_entry]], axis=0))
        return params

    def _map_forward(self, x: tf.Tensor, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return rational_quadratic_spline(x, params, tail_bound=self._tail_bound)

    def _map_inverse(self, y: tf.Tensor, params: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return rational_quadratic_spline(y, params, tail_bound=self._tail_bound, inverse=True)
