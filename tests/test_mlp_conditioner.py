"""MLPConditioner: zero-initialised output, shapes, seeds, context, serialisation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import MLPConditioner


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
def test_output_starts_at_zero_with_the_right_shape(batch_shape):
    conditioner = MLPConditioner((8, 8), output_shape=(3,))
    shift, log_scale = conditioner(tf.random.normal(batch_shape + (2,)))
    assert shift.shape == batch_shape + (3,) and log_scale.shape == batch_shape + (3,)
    np.testing.assert_array_equal(shift, 0.0)
    np.testing.assert_array_equal(log_scale, 0.0)


def test_image_event_keeps_its_shape():
    conditioner = MLPConditioner((8,), event_ndims=3)
    shift, log_scale = conditioner(tf.zeros([5, 2, 3, 2]))
    assert shift.shape == (5, 2, 3, 2) and log_scale.shape == (5, 2, 3, 2)


def test_seed_gives_the_same_weights():
    a, b, c = (MLPConditioner((8,), output_shape=(2,), seed=s) for s in (1, 1, 2))
    for layer in (a, b, c):
        layer.build((None, 2))
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_context_is_concatenated():
    conditioner = MLPConditioner((8,), output_shape=(2,), context_size=3, seed=0)
    conditioner.build((None, 2))
    for w in conditioner.weights:
        w.assign(np.random.default_rng(0).standard_normal(w.shape))
    x = tf.ones([4, 2])
    a = conditioner(x, context=tf.zeros([4, 3]))[0]
    b = conditioner(x, context=tf.ones([4, 3]))[0]
    # Standard normal weights make the difference of order 1 (measured: 2.8), far above float32 round-off.
    assert np.max(np.abs(a - b)) > 1e-3
    with pytest.raises(ValueError, match="context_size=3; pass context="):
        conditioner(x)


def test_config_round_trip():
    conditioner = MLPConditioner((8, 4), output_shape=(3,), activation="tanh", seed=5, name="c")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(conditioner))
    assert isinstance(clone, MLPConditioner)
    assert clone.get_config() == conditioner.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"hidden_units must be positive widths; got \(8, 0\)"):
        MLPConditioner((8, 0))
    with pytest.raises(ValueError, match=r"output_shape must hold positive sizes; got \(0,\)"):
        MLPConditioner((8,), output_shape=(0,))
