"""Squeeze: space to depth, exactly invertible, with log-determinant 0."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from _bijector_checks import (assert_batch_shapes, assert_eager_function_and_xla_agree,
                              assert_log_det_matches_autodiff, assert_round_trip)

from tfp_realnvp import Squeeze

tfb = tfp.bijectors


def _images(shape, dtype="float64", seed=0):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("factor, shape", [(2, (5, 4, 6, 3)), (3, (2, 6, 3, 2))], ids=["2x2", "3x3"])
def test_squeeze_is_tf_space_to_depth(factor, shape):
    x = _images(shape, "float32")
    squeeze = Squeeze(factor)
    y = squeeze.forward(x)
    np.testing.assert_array_equal(y, tf.nn.space_to_depth(x, factor))
    np.testing.assert_array_equal(squeeze.inverse(tf.identity(y)), tf.nn.depth_to_space(y, factor))
    h, w, c = shape[1:]
    assert y.shape == (shape[0], h // factor, w // factor, c * factor**2)


def test_round_trip_is_exact_both_ways(dtype):
    # A permutation of the entries: no arithmetic, so the round trip is bit-identical.
    y = assert_round_trip(Squeeze(), _images((4, 6, 4, 2), dtype), exact=True)
    assert y.shape == (4, 3, 2, 8)


def test_log_det_is_zero_and_matches_autodiff():
    squeeze, x = Squeeze(), _images((3, 4, 4, 2))
    np.testing.assert_array_equal(squeeze.forward_log_det_jacobian(x, event_ndims=3), np.zeros(3))
    np.testing.assert_array_equal(squeeze.inverse_log_det_jacobian(squeeze.forward(x), event_ndims=3), np.zeros(3))
    assert_log_det_matches_autodiff(squeeze, x, event_ndims=3)  # a permutation matrix: |det| = 1
    assert squeeze.is_constant_jacobian


def test_batch_shapes_and_compilation():
    x = _images((6, 4, 4, 1), "float32")
    assert_batch_shapes(Squeeze(), x, event_ndims=3)
    assert_eager_function_and_xla_agree(Squeeze(), x, event_ndims=3)


def test_event_shapes_both_ways():
    squeeze = Squeeze()
    assert squeeze.forward_event_shape([8, 8, 1]) == (4, 4, 4)
    assert squeeze.inverse_event_shape([4, 4, 4]) == (8, 8, 1)
    assert squeeze.forward_event_shape([None, None, 1]).as_list() == [None, None, None]
    np.testing.assert_array_equal(squeeze.forward_event_shape_tensor([8, 6, 3]), [4, 3, 12])
    np.testing.assert_array_equal(squeeze.inverse_event_shape_tensor([4, 3, 12]), [8, 6, 3])
    # As TFP's Glow does with its Expand, a flow squeezing on the way to its latent holds the inverse.
    unsqueeze = tfb.Invert(squeeze)
    assert unsqueeze.forward_event_shape([4, 4, 4]) == (8, 8, 1)


def test_bad_shapes_and_factors_are_named():
    with pytest.raises(ValueError, match="factor must be an integer >= 2; got 1"):
        Squeeze(1)
    with pytest.raises(ValueError, match=r"event shape \[7, 8, 1\] has a height or width not divisible by 2"):
        Squeeze().forward(tf.zeros([2, 7, 8, 1]))
    with pytest.raises(ValueError, match=r"has 6 channels, not divisible by 4"):
        Squeeze().inverse(tf.zeros([2, 4, 4, 6]))
    with pytest.raises(ValueError, match=r"needs a static event shape \[H, W, C\]"):
        Squeeze().forward(tf.zeros([8, 8]))
