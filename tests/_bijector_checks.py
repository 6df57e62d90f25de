"""Property checks every bijector of the package passes: one function per property, shared by the tests.

Inputs are wrapped in `tf.identity` wherever TFP's cache would otherwise hand back a stored result
instead of computing one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf
from conftest import LOGDET_RTOL, tolerances


def assert_round_trip(bijector: Any, x: tf.Tensor, *, exact: bool = False, **kwargs: Any) -> tf.Tensor:
    """`inverse(forward(x)) == x` and `forward(inverse(y)) == y`; returns `y = forward(x)`."""
    y = bijector.forward(tf.identity(x), **kwargs)
    x_again = bijector.inverse(tf.identity(y), **kwargs)
    y_again = bijector.forward(tf.identity(bijector.inverse(tf.identity(y), **kwargs)), **kwargs)
    if exact:
        np.testing.assert_array_equal(x_again, x)
        np.testing.assert_array_equal(y_again, y)
    else:
        np.testing.assert_allclose(x_again, x, **tolerances(x.dtype))
        np.testing.assert_allclose(y_again, y, **tolerances(x.dtype))
    return y


def assert_fldj_is_minus_ildj(bijector: Any, x: tf.Tensor, event_ndims: int, **kwargs: Any) -> tf.Tensor:
    """`forward_log_det_jacobian(x) == -inverse_log_det_jacobian(forward(x))`, of the batch's shape."""
    y = bijector.forward(tf.identity(x), **kwargs)
    fldj = bijector.forward_log_det_jacobian(tf.identity(x), event_ndims=event_ndims, **kwargs)
    ildj = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=event_ndims, **kwargs)
    np.testing.assert_allclose(fldj, -ildj, **tolerances(x.dtype))
    assert fldj.shape == x.shape[: x.shape.rank - event_ndims], (fldj.shape, x.shape)
    return fldj


def _slogdet_of(fn: Any, x: tf.Tensor, event_ndims: int) -> np.ndarray:
    """`log|det d fn(x) / dx|` per example by autodiff, for a batch `[n, *event]` (events flattened)."""
    n, size = x.shape[0], math.prod(x.shape[1:])
    flat = tf.reshape(x, [n, size])
    # Eagerly, a loop over the rows is faster than pfor's vectorisation of a deep flow (1 s against 3).
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(flat)
        out = tf.reshape(fn(tf.reshape(flat, x.shape)), [n, -1])
    jacobian = tape.batch_jacobian(out, flat, experimental_use_pfor=False)
    assert jacobian.shape == (n, size, size), f"not square: {jacobian.shape}"
    return tf.linalg.slogdet(jacobian)[1].numpy()


def assert_log_det_matches_autodiff(bijector: Any, x: tf.Tensor, event_ndims: int, **kwargs: Any) -> None:
    """Both log-dets against `tf.GradientTape.batch_jacobian` + `slogdet`; `x` is float64 `[n, *event]`."""
    assert x.dtype == tf.float64 and x.shape.rank == event_ndims + 1
    fldj = bijector.forward_log_det_jacobian(tf.identity(x), event_ndims=event_ndims, **kwargs)
    # atol for log-dets at or near 0 (Squeeze's is exactly 0), where a relative tolerance allows nothing: slogdet of
    # a float64 [n, n] Jacobian of entries of order 1 is off by some n * eps64 ~ 1e-14 absolute.
    np.testing.assert_allclose(fldj, _slogdet_of(lambda v: bijector.forward(v, **kwargs), x, event_ndims),
                               rtol=LOGDET_RTOL, atol=1e-10)
    y = tf.identity(bijector.forward(tf.identity(x), **kwargs))
    ildj = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=event_ndims, **kwargs)
    np.testing.assert_allclose(ildj, _slogdet_of(lambda v: bijector.inverse(v, **kwargs), y, event_ndims),
                               rtol=LOGDET_RTOL, atol=1e-10)  # as above


def assert_batch_shapes(bijector: Any, x_one: tf.Tensor, event_ndims: int, **kwargs: Any) -> None:
    """No batch axis, one, and two: each example is transformed on its own, the log-det has the
    batch's shape. `x_one` is a batch `[6, *event]`."""
    expected_y = bijector.forward(tf.identity(x_one), **kwargs)
    expected_ldj = bijector.forward_log_det_jacobian(tf.identity(x_one), event_ndims=event_ndims, **kwargs)
    event = tuple(x_one.shape[1:])
    for batch_shape in ((), (6,), (2, 3)):
        x = tf.reshape(x_one, batch_shape + event) if batch_shape else x_one[0]
        y = bijector.forward(tf.identity(x), **kwargs)
        ldj = bijector.forward_log_det_jacobian(tf.identity(x), event_ndims=event_ndims, **kwargs)
        assert ldj.shape == batch_shape and ldj.dtype == x.dtype, (batch_shape, ldj.shape)
        assert bijector.inverse(tf.identity(y), **kwargs).shape == x.shape
        wanted_y = tf.reshape(expected_y, batch_shape + tuple(expected_y.shape[1:])) if batch_shape else expected_y[0]
        np.testing.assert_allclose(y, wanted_y, **tolerances(x.dtype))
        np.testing.assert_allclose(ldj, tf.reshape(expected_ldj, batch_shape) if batch_shape else expected_ldj[0],
                                   **tolerances(x.dtype))


def assert_eager_function_and_xla_agree(bijector: Any, x: tf.Tensor, event_ndims: int, **kwargs: Any) -> None:
    """`forward`, its log-det and `inverse` give the same eagerly, in `tf.function` and under XLA."""

    def run(x):
        y = bijector.forward(x, **kwargs)
        return y, bijector.forward_log_det_jacobian(x, event_ndims=event_ndims, **kwargs), \
            bijector.inverse(tf.identity(y), **kwargs)

    eager = run(tf.identity(x))
    for compiled in (tf.function(run), tf.function(run, jit_compile=True)):
        for got, want in zip(compiled(tf.identity(x)), eager):
            # XLA may fuse and reorder float32 arithmetic: a few ulps.
            np.testing.assert_allclose(got, want, **tolerances(x.dtype))
