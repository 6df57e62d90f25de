"""FactorOut: the next scale on the first channels, the rest bit-identical, the log-det the next scale's."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from _bijector_checks import assert_fldj_is_minus_ildj, assert_log_det_matches_autodiff, assert_round_trip

from tfp_realnvp import AffineCoupling, BatchNormalization, FactorOut, MLPConditioner, checkerboard_mask
from tfp_realnvp.routing import route

tfb = tfp.bijectors


def _inner(dtype="float64"):
    coupling = AffineCoupling(MLPConditioner((8,), event_ndims=3, dtype=dtype, seed=3),
                              mask=checkerboard_mask((2, 2, 2)), name="inner_coupling")
    for v in coupling.trainable_variables:
        v.assign(0.5 * np.random.default_rng(1).standard_normal(v.shape))
    return tfb.Chain([coupling, BatchNormalization((2, 2, 2), dtype=dtype, name="inner_bn")], name="inner")


def _x(dtype="float64"):
    return tf.constant(np.random.default_rng(0).standard_normal((5, 2, 2, 4)), dtype)


def test_the_rest_passes_through_and_the_log_det_is_the_inner_ones(dtype):
    inner, x = _inner(dtype), _x(dtype)
    factor_out = FactorOut(inner, num_kept=2, event_shape=(2, 2, 4))
    y = assert_round_trip(factor_out, x)
    np.testing.assert_array_equal(y[..., 2:], x[..., 2:])
    # The same inner map on the same half; 1e-6 leaves room for an ulp of float32 from another kernel order.
    np.testing.assert_allclose(y[..., :2], inner.forward(x[..., :2]), rtol=1e-6)
    fldj = assert_fldj_is_minus_ildj(factor_out, x, event_ndims=3)
    np.testing.assert_allclose(fldj, inner.forward_log_det_jacobian(x[..., :2], event_ndims=3), rtol=1e-6)
    assert_log_det_matches_autodiff(FactorOut(_inner(), num_kept=2, event_shape=(2, 2, 4)), _x(), event_ndims=3)


def test_keywords_reach_the_inner_parts():
    inner = _inner()
    factor_out = FactorOut(inner, num_kept=2, event_shape=(2, 2, 4), name="factor_out")
    chain = tfb.Chain([tfb.Shift(tf.constant(1.0, tf.float64)), factor_out])
    assert factor_out.condition_keys == ("training",)
    assert route(chain, training=True) == {"factor_out": {"training": True}}
    bn = inner.bijectors[1]
    before = bn.moving_mean.numpy().copy()
    chain.inverse(_x(), **route(chain, training=True))
    assert not np.array_equal(bn.moving_mean.numpy(), before)  # batch statistics, and an update


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"num_kept for an event of 4 channels must be an integer in \[1, 3\]; got 4"):
        FactorOut(tfb.Identity(), num_kept=4, event_shape=(2, 2, 4))
    with pytest.raises(ValueError, match=r"maps events \[2, 2, 2\] to \[1, 1, 8\]; expected it to keep their shape"):
        from tfp_realnvp import Squeeze

        FactorOut(Squeeze(), num_kept=2, event_shape=(2, 2, 4))
