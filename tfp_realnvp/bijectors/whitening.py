"""Whitening: the data's own full-covariance Gaussian as a preprocessing bijector.

Fitted on the training rows `w_1..w_n` (vectors of `D` entries), by maximum likelihood:

```none
mean   m = (1/n) sum_i w_i
cov    S = (1/n) sum_i (w_i - m)(w_i - m)^T = L L^T        (L: lower-triangular Cholesky factor)
forward (flow space u -> data w):  w = L u + m
inverse (data w -> flow space u):  u = L^{-1} (w - m)
log|det dw/du| =  sum_d log L_dd                         (forward_log_det_jacobian)
log|det du/dw| = -sum_d log L_dd                         (inverse_log_det_jacobian)
```

Behind a flow that starts at the identity (couplings whose conditioners end at zero) on a
standard normal base, the fresh model's density is exactly `N(m, S)`: the maximum-likelihood
full-covariance Gaussian of the training rows. Training can only move from there, and early
stopping that measures the start (`tfp_realnvp.callbacks.EarlyStoppingFromStart`) keeps it
when no epoch beats it on validation.

The map is `tfb.Shift` after a triangular scale whose inverse multiplies by `L^{-1}`, fitted
with `L` (in float64) and kept beside it, where `tfb.ScaleMatvecTriL` solves a triangular
system: both directions are then plain matrix products, which tf2onnx converts (it has no
`MatrixTriangularSolve`), and the log-determinant is the plain sum of `log|L_dd|`. Both read
`m`, `L` and `L^{-1}` from the Keras weights of `Whitening` at call time, so a loaded or
exported model carries them.

Tables that have no maximum-likelihood Gaussian are refused by `fit_gaussian`, with the
columns named: fewer than two rows, no more rows than columns (the covariance of `n` rows has
rank at most `n - 1`), a constant column, two columns that are exact affine copies of each
other, or columns linearly dependent in some other way (the correlation matrix's smallest
eigenvalue below `1e-10` of its largest, float64). No ridge is added: a density over a
degenerate direction is unbounded, and a ridge would only hide that behind a large number.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "MIN_EIGENVALUE",
    "Whitening",
    "fit_gaussian",
    "gaussian_nll",
]

tfb = tfp.bijectors

MIN_EIGENVALUE = 1e-10
"""Smallest eigenvalue of the training rows' correlation matrix, relative to its largest, that
`fit_gaussian` accepts: below it the columns are taken as linearly dependent (float64 rounding
of an exact dependence leaves about 1e-16)."""


def fit_gaussian(rows: Any, *, names: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The maximum-likelihood Gaussian of `rows` `[n, D]`: `(mean [D], Cholesky factor [D, D])`, float64.

    The factor is computed as `diag(s) chol(R)` from the standard deviations `s` and the
    correlation matrix `R`, which keeps its conditioning independent of the columns' units.

    Args:
      rows: `[n, D]` finite numbers.
      names: Optional column names, used in the messages instead of numbers counted from 1.

    Raises:
      ValueError: For a table without a maximum-likelihood Gaussian (see the module's
        docstring); the message names the columns and what is expected.
    """
    w = np.asarray(rows, np.float64)
    if w.ndim != 2:
        raise ValueError(f"the Gaussian whitening takes rows [n, D]; got shape {w.shape}")
    n, d = w.shape
    label = (lambda j: repr(names[j])) if names else (lambda j: str(j + 1))
    if n <= d:
        raise ValueError(
            f"the full-covariance whitening needs more training rows than columns (the covariance of {n} rows has "
            f"rank at most {max(n - 1, 0)}); got {n} rows and {d} columns: expected more rows, or per-column "
            "standardisation (whiten off)")
    mean = w.mean(axis=0)
    centred = w - mean
    std = np.sqrt((centred**2).mean(axis=0))
    constant = np.flatnonzero(std <= 1e-12 * np.maximum(1.0, np.abs(mean)))
    if constant.size:
        listed = ", ".join(f"{label(j)} (every value {w[0, j]:g})" for j in constant[:5])
        raise ValueError(
            f"column(s) {listed} are constant in the {n} training rows: a density over a constant is degenerate; "
            "expected columns that vary (drop the constant ones)")
    z = centred / std
    corr = z.T @ z / n
    np.fill_diagonal(corr, 1.0)
    upper = np.abs(np.triu(corr, 1))
    i, j = np.unravel_index(np.argmax(upper), upper.shape) if d > 1 else (0, 0)
    if d > 1 and upper[i, j] > 1.0 - 1e-12:
        raise ValueError(
            f"columns {label(i)} and {label(j)} are copies of each other in the training rows (correlation "
            f"{corr[i, j]:+.12f}: one is a * other + b): the covariance is singular; expected distinct columns "
            "(drop one of them)")
    eigenvalues = np.linalg.eigvalsh(corr)
    if eigenvalues[0] < MIN_EIGENVALUE * eigenvalues[-1]:
        raise ValueError(
            f"the columns are linearly dependent in the training rows (the correlation matrix's smallest eigenvalue "
            f"is {eigenvalues[0]:.3g} of its largest {eigenvalues[-1]:.3g}): the covariance is singular; expected "
            "columns none of which is a linear combination of the others")
    return mean, std[:, None] * np.linalg.cholesky(corr)


def gaussian_nll(fit_rows: Any, rows: Any) -> float:
    """Mean negative log-likelihood (nats) of `rows` under `fit_gaussian(fit_rows)`, in float64.

    Raises:
      ValueError: As `fit_gaussian`.
    """
    mean, tril = fit_gaussian(fit_rows)
    x = np.asarray(rows, np.float64) - mean
    from scipy.linalg import solve_triangular  # pylint: disable=import-outside-toplevel

    u = solve_triangular(tril, x.T, lower=True)
    d = tril.shape[0]
    log_prob = -0.5 * (u**2).sum(axis=0) - np.log(np.diag(tril)).sum() - 0.5 * d * np.log(2.0 * np.pi)
    return float(-log_prob.mean())


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class Whitening(keras.layers.Layer):
    """The weights of the Gaussian whitening, `mean` `[D]` and `scale_tril` `[D, D]`, and its bijector.

    Not trained: `adapt` fits them once on the training rows (`fit_gaussian`); they are saved
    with the model (a `.keras` file, a SavedModel) like any weight. Before `adapt` the map is
    the identity.

    Args:
      event_size: `D`, the number of entries of a row.
      **kwargs: Passed to `keras.layers.Layer` (`dtype`, `name`).

    Example:

    ```python
    import numpy as np
    from tfp_realnvp.bijectors.whitening import Whitening

    rows = np.random.default_rng(0).normal(size=(100, 3)) @ [[1, 0, 0], [0.5, 1, 0], [0, 2, 3]]
    whitening = Whitening(3, dtype="float64")
    whitening.adapt(rows)
    u = whitening.bijector().inverse(rows)  # zero mean, identity covariance
    ```
    """

    def __init__(self, event_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.event_size = int(event_size)
        d = self.event_size
        self.mean = self.add_weight(name="mean", shape=(d,), initializer="zeros", trainable=False)
        self.scale_tril = self.add_weight(name="scale_tril", shape=(d, d), initializer="identity", trainable=False)
        self.inverse_tril = self.add_weight(name="inverse_tril", shape=(d, d), initializer="identity",
                                            trainable=False)
        self.built = True
        # Reads the variables at call time, so adapt() and load_weights() take effect.
        scale = tfb.Inline(
            forward_fn=lambda u: tf.linalg.matvec(self.scale_tril.value, u),
            inverse_fn=lambda w: tf.linalg.matvec(self.inverse_tril.value, w),
            inverse_log_det_jacobian_fn=lambda w: -tf.reduce_sum(
                tf.math.log(tf.abs(tf.linalg.diag_part(self.scale_tril.value)))),
            forward_min_event_ndims=1, is_constant_jacobian=True, name="triangular_scale")
        self._bijector = tfb.Chain([tfb.Shift(self.mean.value), scale], name="whitening")

    def bijector(self) -> tfb.Bijector:
        """`w = L u + m`: the flow's space to data space."""
        return self._bijector

    def adapt(self, rows: Any, *, names: Any = None) -> None:
        """Fits `mean` and `scale_tril` to `rows` `[n, D]` (`fit_gaussian`; its errors)."""
        mean, tril = fit_gaussian(rows, names=names)
        self.mean.assign(mean.astype(self.mean.dtype))
        self.scale_tril.assign(tril.astype(self.scale_tril.dtype))
        # L^{-1} of a well-conditioned triangular factor (fit_gaussian refuses the others), in float64.
        inverse = np.linalg.solve(tril, np.eye(len(tril)))
        self.inverse_tril.assign(np.tril(inverse).astype(self.inverse_tril.dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "event_size": self.event_size}
