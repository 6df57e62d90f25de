"""bijectors/preprocessing.py: dequantization, scaling, the logit and standardisation, and their statistics."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp.bijectors.preprocessing import Preprocessing


def _logit(v, alpha):
    return np.log(alpha + (1 - alpha) * v) - np.log1p(-v) - np.log1p(-alpha)


def test_dequantize_adds_fresh_noise_below_the_next_level_and_leaves_continuous_data():
    x = tf.constant([[0.0, 3.0, 16.0]] * 200)
    continuous = Preprocessing(3)
    assert continuous.dequantize(x, keras.random.SeedGenerator(0)) is x
    noisy = Preprocessing(3, integer_levels=17).dequantize(x, keras.random.SeedGenerator(0)).numpy()
    assert np.all(noisy >= x.numpy()) and np.all(noisy < x.numpy() + 1)
    assert len(np.unique(noisy[:, 0])) > 190  # fresh noise for every entry


def test_dequantized_integers_stay_below_the_next_level(monkeypatch):
    # In float32, 16 + 0.99999994 (the largest uniform draw below 1) is 17.0: the top level left
    # [0, levels), its logit was infinite and the digits recipe diverged to NaN at epoch 36.
    largest_below_one = np.float32(1 - 2**-24)
    assert np.float32(16) + largest_below_one == np.float32(17)  # the rounding the cap guards against
    monkeypatch.setattr(keras.random, "uniform", lambda shape, seed=None, dtype=None, **kwargs: tf.fill(
        shape, tf.constant(largest_below_one, dtype)))
    preprocessing = Preprocessing(3, integer_levels=17, logit_alpha=0.05)
    x = preprocessing.dequantize(tf.constant([[16.0, 0.0, 3.0]]), keras.random.SeedGenerator(0))
    assert np.all(x.numpy() < [[17, 1, 4]])
    assert np.all(np.isfinite(preprocessing.bijector().inverse(x)))


@pytest.mark.parametrize("levels, alpha", [(256, 1e-6), (17, 0.05), (None, 1e-6)])
def test_the_logit_is_finite_up_to_the_top_of_its_range(levels, alpha):
    # The relative of the bug above: alpha + (1 - alpha) v rounded to 1 in float32 for v just below 1
    # (alpha 1e-6, v = (256 - 2^-16) / 256: logit(1.0) = inf). The logit now never forms that sum.
    bijector = Preprocessing(2, standardize=False, integer_levels=levels, logit_alpha=alpha).bijector()
    top = np.nextafter(np.float32(levels or 1), np.float32(0))  # the largest float32 below the top
    x = np.array([[top, top], [0.0, top]], np.float32)
    assert np.all(np.isfinite(bijector.inverse(x))) and np.all(np.isfinite(bijector.inverse_log_det_jacobian(x, 1)))
    # The float64 logit of v = x / levels as float32 rounds that division (1 - v then has one
    # significant bit at 17 levels: the value the flow is given, not a defect of the logit).
    v = np.float64(top / np.float32(levels or 1))
    # float32: 1 - v is exact (Sterbenz) and log1p(-v) keeps it to a few ulps of ~17: ~1e-5.
    np.testing.assert_allclose(bijector.inverse(x)[0], _logit(v, alpha), rtol=1e-5)


def test_statistics_are_fitted_in_flow_space_through_the_same_logit():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 17, size=(500, 4)).astype(np.float64)
    preprocessing = Preprocessing(4, integer_levels=17, logit_alpha=0.05, dtype="float64")
    preprocessing.adapt(data)
    w = _logit((data + 0.5) / 17, 0.05)  # cell centres, scaled, logit: the closed form
    # float64 throughout; the closed form and TF's log/log1p differ by a few ulps: ~1e-12.
    np.testing.assert_allclose(preprocessing.mean.numpy(), w.mean(0), rtol=1e-12)
    np.testing.assert_allclose(preprocessing.std.numpy(), w.std(0), rtol=1e-12)
    np.testing.assert_allclose(preprocessing.to_flow_space(data[:5]), _logit(data[:5] / 17, 0.05), rtol=1e-12)
    # The fitted map takes the data to zero mean, unit variance (float64: ~1e-12).
    u = preprocessing.bijector().inverse(tf.constant(data + 0.5)).numpy()
    np.testing.assert_allclose(u.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(u.std(0), 1, rtol=1e-12)


def test_a_dataset_is_adapted_in_one_streaming_pass_to_the_same_statistics():
    # Data larger than memory arrive as batches: the per-entry moments are merged batch by batch
    # (Chan et al.), never concatenated. Uneven batches, and batches whose means differ (sorted rows).
    rng = np.random.default_rng(1)
    data = np.sort(rng.integers(0, 17, size=(1000, 4)).astype(np.float64), axis=0)
    whole, streamed = (Preprocessing(4, integer_levels=17, logit_alpha=0.05, dtype="float64") for _ in range(2))
    whole.adapt(data)
    streamed.adapt(tf.data.Dataset.from_tensor_slices(data).batch(300))
    # float64 sums in another order: ~1e-15 relative.
    np.testing.assert_allclose(streamed.mean.numpy(), whole.mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(streamed.std.numpy(), whole.std.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="adapt got no rows"):
        streamed.adapt(tf.data.Dataset.from_tensor_slices(data[:0]).batch(300))
    # max_batches stops reading: a repeating dataset's first 4 batches are the data, once.
    streamed.adapt(tf.data.Dataset.from_tensor_slices(data).batch(250).repeat(), max_batches=4)
    np.testing.assert_allclose(streamed.mean.numpy(), whole.mean.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match=r"integer data must lie in \[0, 16\]"):
        streamed.adapt(tf.data.Dataset.from_tensor_slices(data + 1).batch(300))


def test_the_chain_round_trips_with_opposite_log_dets():
    preprocessing = Preprocessing([2, 2, 1], integer_levels=5, logit_alpha=0.05, dtype="float64")
    preprocessing.adapt(np.random.default_rng(1).integers(0, 5, size=(64, 2, 2, 1)).astype(np.float64))
    bijector = preprocessing.bijector()
    x = tf.identity(tf.constant(np.random.default_rng(2).uniform(0, 5, size=(3, 2, 2, 1))))  # no cache
    u = bijector.inverse(x)
    # float64 through a logit and an affine map: ~1e-12.
    np.testing.assert_allclose(bijector.forward(tf.identity(u)), x, rtol=1e-12)
    np.testing.assert_allclose(bijector.forward_log_det_jacobian(tf.identity(u), 3),
                               -bijector.inverse_log_det_jacobian(x, 3), rtol=1e-12)
    # Without the logit and the statistics, only the division by 5 of 4 entries is left.
    plain = Preprocessing([2, 2, 1], standardize=False, integer_levels=5, dtype="float64").bijector()
    np.testing.assert_allclose(plain.inverse_log_det_jacobian(x, 3), -4 * math.log(5.0), rtol=1e-12)


@pytest.mark.parametrize("options, pattern", [
    (dict(event_shape=[2, 0]), r"event_shape must be positive integers such as \[2\] or \[8, 8, 1\]; got \[2, 0\]"),
    (dict(event_shape=2, integer_levels=1), "integer_levels must be an integer >= 2; got 1"),
    (dict(event_shape=2, integer_levels=17, logit_alpha=0.0), "logit_alpha must be > 0 with integer_levels"),
    (dict(event_shape=2, standardize="no"), "standardize must be True or False; got 'no'"),
])
def test_bad_arguments_are_named(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        Preprocessing(**options)
