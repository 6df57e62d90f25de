"""LUMixing: the LU linear map over vectors and Glow's 1x1 convolution over images."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import FlowModel, LUMixing, real_nvp, real_nvp_multiscale
from tfp_realnvp.bijectors.mixing import LUWeights


def _randomized(shape, dtype="float32", seed=0) -> LUMixing:
    mixing = LUMixing(shape, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    for w in mixing.weights_layer.trainable_weights:
        w.assign(0.5 * rng.standard_normal(w.shape))
    return mixing


def test_a_fresh_map_is_a_seeded_permutation():
    x = tf.constant(np.arange(12.0).reshape(2, 6), tf.float32)
    y = LUMixing([6], seed=3).forward(x)
    again = LUMixing([6], seed=3).forward(x)
    np.testing.assert_array_equal(y, again)
    assert sorted(y.numpy()[0].tolist()) == x.numpy()[0].tolist() and not np.array_equal(y, x)
    np.testing.assert_array_equal(LUMixing([6], seed=None).forward(x), x)  # seed None: the identity
    assert LUMixing([6]).forward_log_det_jacobian(x, event_ndims=1).numpy().tolist() == [0.0, 0.0]


@pytest.mark.parametrize("shape", [(5,), (1,), (4, 4, 3)], ids=["vector", "one", "image"])
def test_round_trip_and_log_det_against_autodiff(shape):
    mixing = _randomized(shape, "float64")
    x = tf.constant(np.random.default_rng(1).normal(size=(3, *shape)))
    y = mixing.forward(tf.identity(x))
    np.testing.assert_allclose(mixing.inverse(tf.identity(y)), x, atol=1e-12)  # float64, entries O(1)
    flat = tf.reshape(x, [3, -1])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        out = tf.reshape(mixing.forward(tf.reshape(flat, x.shape)), [3, -1])
    expected = tf.linalg.slogdet(tape.batch_jacobian(out, flat))[1]
    fldj = mixing.forward_log_det_jacobian(tf.identity(x), event_ndims=len(shape))
    ildj = mixing.inverse_log_det_jacobian(tf.identity(y), event_ndims=len(shape))
    assert fldj.shape == [3]  # one per example, not a broadcast scalar (what LiteRT mishandles)
    np.testing.assert_allclose(fldj, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ildj, -expected, rtol=1e-9, atol=1e-9)


def test_float32_round_trip_and_compiled():
    mixing = _randomized((8,))
    x = tf.constant(np.random.default_rng(2).normal(size=(4, 8)), tf.float32)
    inverse = tf.function(lambda y: mixing.inverse(y), jit_compile=True)
    # Factors of scale 0.5 over 8 channels: W's condition number ~1e2, so ~1e2 ulps.
    np.testing.assert_allclose(inverse(mixing.forward(tf.identity(x))), x, atol=1e-4)


def test_weights_live_in_a_tracked_layer_that_a_flow_model_saves(tmp_path):
    mixing = _randomized((4,))
    (layer,) = mixing.keras_layers
    assert isinstance(layer, LUWeights) and len(mixing.trainable_variables) == 3
    model = FlowModel(3, num_couplings=2, hidden_units=(4,), permutation="lu", standardize=False)
    (lu,) = [layer for layer in model.flow_layers if isinstance(layer, LUWeights)]
    assert {id(w) for w in lu.trainable_weights} <= {id(w) for w in model.trainable_weights}
    for w in lu.trainable_weights:
        w.assign(0.3 * np.random.default_rng(3).standard_normal(w.shape))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(4).normal(size=(5, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))


def test_lu_on_an_image_event_and_1x1_on_a_vector_event_are_refused():
    with pytest.raises(ValueError, match=r"permutation='lu' mixes the entries of a vector event \[D\]; got event "
                                         r"shape \[8, 8, 1\]"):
        real_nvp([8, 8, 1], permutation="lu")
    with pytest.raises(ValueError, match=r"mixing='1x1' is Glow's 1x1 convolution over the channels of an image "
                                         r"event \[H, W, C\]; got event shape \[2\]"):
        real_nvp_multiscale([2], mixing="1x1")
    # Either option given to the other flow, as the command line passes them: the same messages.
    with pytest.raises(ValueError, match=r"mixing='1x1' is Glow's"):
        real_nvp(2, mixing="1x1")
    with pytest.raises(ValueError, match=r"permutation='lu' mixes the entries of a vector"):
        real_nvp_multiscale([8, 8, 1], permutation="lu")
