"""bounds.py: each log-scale bound keeps |s| <= MAX_LOG_SCALE, as its docstring says."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp.bounds import LOG_SCALE_BOUNDS, MAX_LOG_SCALE, TanhLogScale, make_log_scale_bound

RAW = tf.constant(np.linspace(-1e4, 1e4, 41).reshape(1, 41), tf.float32)


def test_tanh_starts_as_tanh_and_stays_within_the_cap_whatever_its_scale():
    bound, layer = make_log_scale_bound("tanh", event_ndims=1)
    assert isinstance(layer, TanhLogScale)
    np.testing.assert_array_equal(bound(RAW), tf.tanh(RAW))  # the scale starts at 1
    layer.scale.assign(tf.fill(layer.scale.shape, 100.0))  # grown far past the cap
    s = bound(RAW).numpy()
    assert np.abs(s).max() == MAX_LOG_SCALE and np.all(np.isfinite(np.exp(s)))


def test_sigmoid_contracts_and_is_floored():
    bound, layer = make_log_scale_bound("sigmoid", event_ndims=1)
    s = bound(RAW).numpy()
    # Contracting only: s < 0, which float32 rounds to 0 once sigmoid(raw + 2) rounds to 1.
    assert layer is None and s.min() == -MAX_LOG_SCALE and s.max() <= 0
    assert bound(tf.constant([10.0])).numpy()[0] < 0
    # float32 log_sigmoid: a few ulps.
    np.testing.assert_allclose(bound(tf.zeros([1])), np.log(1 / (1 + np.exp(-2.0))), rtol=1e-6)


def test_unbounded_is_the_raw_output_and_unknown_names_are_refused():
    bound, layer = make_log_scale_bound("unbounded", event_ndims=1)
    assert layer is None and bound(RAW) is RAW
    with pytest.raises(ValueError, match=r"log_scale_bound must be one of .*'tanh'.*; got 'clip'"):
        make_log_scale_bound("clip", event_ndims=1)
    assert set(LOG_SCALE_BOUNDS) == {"tanh", "sigmoid", "unbounded"}


def test_tanh_scale_has_the_event_shape_and_survives_its_config():
    layer = TanhLogScale(event_ndims=3)
    layer(tf.zeros([2, 4, 4, 3]))
    assert tuple(layer.scale.shape) == (4, 4, 3)
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(again, TanhLogScale) and again.event_ndims == 3
