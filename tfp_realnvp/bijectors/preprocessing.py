"""Preprocessing as bijectors, so `log_prob` stays exact in the user's data space.

The map from data `x` to the flow's input `u`, each step optional and each with its
log-determinant counted:

```none
dequantize:     x = x_int + U[0, 1)                     (integer data, every training and evaluation step)
integer data:   v = x / levels
logit:          w = logit(alpha + (1 - alpha) * v)      (data in [0, 1), Real NVP [1])
standardise:    u = (w - mean) / std                    (mean, std fitted on training data)
or whiten:      u = L^{-1} (w - mean)                   (mean, S = L L^T fitted on training data)
```

Whitening (`whiten=True`, vector events) replaces the per-entry standardisation by the training
rows' full covariance (`tfp_realnvp.bijectors.whitening`): behind couplings that start at the
identity, a fresh model is then the maximum-likelihood full-covariance Gaussian of the data.

`Preprocessing.bijector()` returns the inverse of this map as a `tfb.Chain` (flow space to
data space, TFP's generative direction); with it, `log p(x) = log p_flow(u) + log|det du/dx|`.

The logit is computed without forming `p = alpha + (1 - alpha) v`: near `v = 1`, `p` rounds to
1 in float32 (`alpha = 1e-6`, `v = (256 - 2^-16) / 256`: `p = 1.0`, `logit(p) = inf`), while
`1 - p = (1 - alpha)(1 - v)` holds exactly, so

```none
logit:  w = log(alpha + (1 - alpha) v) - log1p(-v) - log1p(-alpha)
        log|dw/dv| = -log(alpha + (1 - alpha) v) - log1p(-v)
```

is finite for every `v < 1` (`_ShiftedLogit`, whose forward is `v = (sigmoid(w) - alpha) / (1 - alpha)`).

References:
  [1] Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using Real NVP.
      ICLR 2017. https://arxiv.org/abs/1605.08803
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
from tfp_realnvp.bijectors.whitening import Whitening

__all__ = [
    "Preprocessing",
]

tfb = tfp.bijectors

# Standard deviations below this are treated as 1, so a constant feature does not divide by 0.
_MIN_STD = 1e-8


class _ShiftedLogit(tfb.Bijector):
    """`v = (sigmoid(w) - alpha) / (1 - alpha)`, the inverse of `w = logit(alpha + (1 - alpha) v)`.

    ```none
    forward:  v = (sigmoid(w) - alpha) / (1 - alpha)
    inverse:  w = log(alpha + (1 - alpha) v) - log1p(-v) - log1p(-alpha)
    log|dv/dw| = log_sigmoid(w) + log_sigmoid(-w) - log1p(-alpha)
    log|dw/dv| = -log(alpha + (1 - alpha) v) - log1p(-v)
    ```

    The inverse uses `1 - p = (1 - alpha)(1 - v)` for `p = alpha + (1 - alpha) v`, so it never
    rounds `p` to 1: finite for `-alpha / (1 - alpha) < v < 1` in float32 and float64 alike.
    The same map as `tfb.Chain([Scale(1 / (1 - alpha)), Shift(-alpha), Sigmoid()])`.
    """

    def __init__(self, alpha: float, *, validate_args: bool = False, name: str = "shifted_logit") -> None:
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._alpha = float(alpha)  # a Python float: the map takes float32 and float64 alike, as tfb.Sigmoid
            super().__init__(forward_min_event_ndims=0, validate_args=validate_args, parameters=parameters,
                             name=name)

    @classmethod
    def _parameter_properties(cls, dtype: Any, num_classes: Any = None) -> dict[str, Any]:
        return dict()

    @property
    def alpha(self) -> float:
        return self._alpha

    def _forward(self, w: tf.Tensor) -> tf.Tensor:
        return (tf.sigmoid(w) - self._alpha) / (1.0 - self._alpha)

    def _inverse(self, v: tf.Tensor) -> tf.Tensor:
        return tf.math.log(self._alpha + (1.0 - self._alpha) * v) - tf.math.log1p(-v) - math.log1p(-self._alpha)

    def _forward_log_det_jacobian(self, w: tf.Tensor) -> tf.Tensor:
        return tf.math.log_sigmoid(w) + tf.math.log_sigmoid(-w) - math.log1p(-self._alpha)

    def _inverse_log_det_jacobian(self, v: tf.Tensor) -> tf.Tensor:
        return -tf.math.log(self._alpha + (1.0 - self._alpha) * v) - tf.math.log1p(-v)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class Preprocessing(keras.layers.Layer):
    """Holds the data-to-flow preprocessing (dequantization, scaling, logit, standardisation) and its statistics.

    Args:
      event_shape: The shape of one example, e.g. `[2]` or `[8, 8, 1]` (an int `D` means
        `[D]`).
      standardize: Fit a per-entry mean and standard deviation with `adapt` and map the
        data to zero mean, unit variance. Defaults to `True`.
      integer_levels: For integer data in `{0, ..., levels - 1}`: the number of levels. The
        model adds uniform noise in `[0, 1)` during training (dequantization) and divides by
        `levels`. Defaults to `None` (continuous data).
      logit_alpha: Apply `logit(alpha + (1 - alpha) * v)` to data in `[0, 1)` (after the
        division by `levels`, for integer data; `(0, 1)` for `alpha = 0`, which integer data may
        not use). Defaults to `None` (no logit).
      whiten: Fit the training rows' mean and full covariance `S = L L^T` with `adapt` and map
        the data by `L^{-1} (w - mean)` instead of the per-entry standardisation (which
        `standardize` then no longer chooses). Vector events only. Defaults to `False`.
      **kwargs: Passed to `keras.layers.Layer` (`dtype`, `name`).

    Raises:
      ValueError: If `event_shape` is not positive integers, `integer_levels` is not an integer
        >= 2, `logit_alpha` is not in `[0, 1)`, or is 0 with `integer_levels`, or `whiten` is
        asked of events that are not vectors.
    """

    def __init__(
        self,
        event_shape: int | Sequence[int],
        *,
        standardize: bool = True,
        integer_levels: int | None = None,
        logit_alpha: float | None = None,
        whiten: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if integer_levels is not None:
            integer_levels = checks.integer("integer_levels", integer_levels, low=2)
        if logit_alpha is not None:
            logit_alpha = checks.number("logit_alpha", logit_alpha, low=0, below=1)
        if logit_alpha is not None and integer_levels is not None and logit_alpha == 0.0:
            raise ValueError(
                "logit_alpha must be > 0 with integer_levels: dequantized data reach 0, where logit(0) is "
                "-inf; expected e.g. 0.05 (Real NVP's)"
            )
        self.event_shape = checks.event_shape(event_shape)
        self.whiten = checks.boolean("whiten", whiten)
        if self.whiten and len(self.event_shape) != 1:
            raise ValueError(f"whiten takes vector events [D]; got event_shape {list(self.event_shape)} (expected "
                             "whiten off, or rows as vectors)")
        self.whitening = Whitening(self.event_shape[0], dtype=self.dtype_policy, name="whitening") if self.whiten \
            else None
        self.standardize = checks.boolean("standardize", standardize)
        self.integer_levels = integer_levels
        self.logit_alpha = logit_alpha
        self.mean = self.add_weight(name="mean", shape=self.event_shape, initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=self.event_shape, initializer="ones", trainable=False)
        self.adapted = self.add_weight(name="adapted", shape=(), initializer="zeros", trainable=False)
        self.built = True
        self._bijector = self._make_bijector()

    @property
    def needs_adapt(self) -> bool:
        """Whether `adapt` must still be called (standardisation with no fitted statistics)."""
        return (self.standardize or self.whiten) and not bool(self.adapted.numpy())

    def _make_bijector(self) -> tfb.Bijector:
        steps = []  # generative order: u -> w -> v -> x
        if self.whitening is not None:
            steps += [self.whitening.bijector()]
        elif self.standardize:
            # Reads the variables at call time, so adapt() and load_weights() take effect.
            steps += [tfb.Scale(self.std.value), tfb.Shift(self.mean.value)]
        steps += self._unstandardised_steps(self.mean.dtype)
        return tfb.Chain(steps[::-1], name="preprocessing") if steps else tfb.Identity()

    def _unstandardised_steps(self, dtype: tf.DType) -> list[tfb.Bijector]:
        """The logit and the division by `levels`, in generative order (w -> v -> x)."""
        steps: list[tfb.Bijector] = []
        if self.logit_alpha is not None:
            steps += [_ShiftedLogit(self.logit_alpha)]
        if self.integer_levels is not None:
            steps += [tfb.Scale(tf.constant(self.integer_levels, dtype))]
        return steps

    def bijector(self) -> tfb.Bijector:
        """The map from the flow's space to data space (the inverse of the preprocessing)."""
        return self._bijector

    def dequantize(self, x: tf.Tensor, seed: Any) -> tf.Tensor:
        """Integer data plus fresh uniform noise, `x + U[0, 1)` (continuous data: `x` as it is).

        Args:
          x: Data of the flow's dtype.
          seed: A `keras.random.SeedGenerator` (or seed) for the noise.
        """
        if self.integer_levels is None:
            return x
        noise = keras.random.uniform(tf.shape(x), seed=seed, dtype=x.dtype)
        # x + u with u in [0, 1) rounds up to x + 1 for u within half an ulp of 1 (16 + 0.99999994
        # is 17.0 in float32): the top level would leave [0, levels), and its logit be infinite,
        # once in about a million draws. The largest float below x + 1 is the cap.
        return tf.minimum(x + noise, tf.math.nextafter(x + 1.0, x))

    def to_flow_space(self, x: np.ndarray) -> np.ndarray:
        """The unstandardised map `x -> w` (division by `levels`, logit), in float64, for fitting the statistics.

        The inverse of the same bijectors `bijector()` chains, so the two cannot disagree.
        """
        steps = self._unstandardised_steps(tf.float64)
        w = tf.constant(np.asarray(x, np.float64))
        return tfb.Chain(steps[::-1]).inverse(w).numpy() if steps else w.numpy()

    def check(self, x: np.ndarray) -> None:
        """Raises ValueError if `x` does not fit this preprocessing (shape, range, finiteness)."""
        x = np.asarray(x)
        if x.shape[1:] != self.event_shape:
            expected = ", ".join(["n", *map(str, self.event_shape)])
            raise ValueError(f"expected data of shape [{expected}]; got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("data has NaN or infinite values; expected finite values")
        if x.size == 0:  # no range to check
            return
        if self.integer_levels is not None:
            if x.min() < 0 or x.max() > self.integer_levels - 1:
                raise ValueError(
                    f"integer data must lie in [0, {self.integer_levels - 1}] (integer_levels="
                    f"{self.integer_levels}); got values in [{x.min()}, {x.max()}]"
                )
        elif self.logit_alpha is not None and (x.min() < 0 or x.max() >= 1 or (self.logit_alpha == 0 and x.min() == 0)):
            # logit(alpha + (1 - alpha) v) is infinite at v = 1 (and at v = 0 for alpha = 0).
            low = "(0" if self.logit_alpha == 0 else "[0"
            raise ValueError(
                f"the logit transform needs data in {low}, 1) (logit_alpha={self.logit_alpha:g}); got values in "
                f"[{x.min()}, {x.max()}]; expected data scaled below 1, e.g. pixels / 256, not / 255"
            )

    def adapt(self, data: np.ndarray | tf.data.Dataset, *, max_batches: int | None = None) -> None:
        """Fits the standardisation statistics on training data (integer data at cell centres).

        Args:
          data: A `[n, *event_shape]` array, or a `tf.data.Dataset` of such batches (or of
            `(x, ...)` tuples, or of `{"x": x, "context": c}` dicts).
          max_batches: With a dataset, read at most this many batches. Defaults to `None`.

        Raises:
          ValueError: If the data have no rows, the wrong shape, or values outside the
            preprocessing's range.
        """
        if isinstance(data, tf.data.Dataset):
            batches = map(_x_of, data if max_batches is None else data.take(max_batches))
            if self.whitening is None:
                self._adapt_streaming(batches)  # one pass, memory flat in the rows
                return
            data = np.concatenate(list(batches), axis=0)  # the covariance's rows: a table's, in memory
        data = np.asarray(data)
        if data.size == 0:  # np.mean of nothing is NaN: the statistics would be NaN, and every log_prob
            raise ValueError(f"adapt got no rows (shape {data.shape}); expected at least one training example to "
                             "fit the standardisation")
        self.check(data)
        if self.integer_levels is not None:
            data = data + 0.5  # cell centres: the dequantized data's mean
        w = self.to_flow_space(data)
        if self.whitening is not None:
            self.whitening.adapt(w.reshape(len(w), -1))
        self._set_statistics(w.mean(axis=0), w.std(axis=0))

    def _adapt_streaming(self, batches: Any) -> None:
        """The per-entry mean and standard deviation of batches read once (Chan et al.'s pairwise
        update of counts, means and squared deviations, in float64), for data larger than memory."""
        count, mean, squares = 0, 0.0, 0.0
        for batch in batches:
            if not batch.size:
                continue
            self.check(batch)
            if self.integer_levels is not None:
                batch = batch + 0.5  # cell centres, as adapt
            w = np.asarray(self.to_flow_space(batch), np.float64)
            n, batch_mean = len(w), w.mean(axis=0)
            delta = batch_mean - mean
            total = count + n
            squares = squares + ((w - batch_mean) ** 2).sum(axis=0) + delta**2 * count * n / total
            mean, count = mean + delta * n / total, total
        if not count:
            raise ValueError("adapt got no rows; expected at least one training example to fit the standardisation")
        self._set_statistics(np.broadcast_to(mean, self.mean.shape), np.sqrt(squares / count))

    def _set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Stores the fitted statistics; a constant entry (std below `_MIN_STD`) is left unscaled."""
        self.mean.assign(mean.astype(self.mean.dtype))
        self.std.assign(np.where(std < _MIN_STD, 1.0, std).astype(self.std.dtype))
        self.adapted.assign(1.0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "event_shape": list(self.event_shape),
            "standardize": self.standardize,
            "integer_levels": self.integer_levels,
            "logit_alpha": self.logit_alpha,
            "whiten": self.whiten,
        }


def _x_of(batch: Any) -> np.ndarray:
    """A batch's `x` as numpy: of `x`, `(x, ...)` or a conditional model's `{"x": x, "context": c}`."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if isinstance(batch, dict):
        batch = batch["x"]
    return np.asarray(batch)
