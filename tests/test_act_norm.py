"""ActNorm: initialised from the first training batch, never in inference, and not again after loading."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from _bijector_checks import (assert_batch_shapes, assert_eager_function_and_xla_agree, assert_fldj_is_minus_ildj,
                              assert_log_det_matches_autodiff, assert_round_trip)

from tfp_realnvp import ActNorm, FlowModel
from tfp_realnvp.flows import register_flow

tfb = tfp.bijectors
tfd = tfp.distributions

EVENT = (4, 4, 2)


def _batch(n=6, dtype="float64", event_shape=EVENT, seed=1):
    rng = np.random.default_rng(seed)
    return tf.constant(3.0 * rng.standard_normal((n, *event_shape)) + 1.5, dtype)


def _randomized(dtype="float64"):
    act_norm = ActNorm(EVENT, dtype=dtype)
    rng = np.random.default_rng(0)
    act_norm.loc.assign(rng.standard_normal(2).astype(dtype))
    act_norm.log_scale.assign((0.4 * rng.standard_normal(2)).astype(dtype))
    return act_norm


def test_is_a_bijector_with_the_log_det_of_its_scale(dtype):
    act_norm, x = _randomized(dtype), _batch(dtype=dtype)
    assert_round_trip(act_norm, x)
    fldj = assert_fldj_is_minus_ildj(act_norm, x, event_ndims=3)
    # A sum of the log-scales times 16 entries, in float32 at worst: about an ulp of the result.
    np.testing.assert_allclose(fldj, np.full(6, 16 * act_norm.log_scale.numpy().sum()), rtol=1e-6)
    assert_log_det_matches_autodiff(_randomized(), _batch(), event_ndims=3)
    assert_batch_shapes(act_norm, x, event_ndims=3)
    assert_eager_function_and_xla_agree(_randomized("float32"), _batch(dtype="float32"), event_ndims=3)


def test_the_first_training_batch_initialises_it_and_later_ones_do_not():
    act_norm, y = ActNorm(EVENT, dtype="float64"), _batch()
    act_norm.inverse(tf.identity(y))  # inference: the identity, and no initialisation
    act_norm.inverse(tf.identity(y), training=False)
    act_norm.forward(tf.identity(y), training=True)  # only the data-to-latent direction sees data
    assert not act_norm.initialized
    np.testing.assert_array_equal(act_norm.inverse(tf.identity(y)), y)
    x = act_norm.inverse(tf.identity(y), training=True)
    assert act_norm.initialized
    flat = x.numpy().reshape(-1, 2)
    # float64: the batch's mean taken off values of order 1-10, then averaged over 96 entries per channel: ~1e-15.
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(flat.std(axis=0), 1.0, rtol=1e-6)  # epsilon 1e-6 on a variance of ~9
    loc, log_scale = act_norm.loc.numpy().copy(), act_norm.log_scale.numpy().copy()
    act_norm.inverse(_batch(seed=7) * 5.0, training=True)  # another batch: kept
    np.testing.assert_array_equal(act_norm.loc.numpy(), loc)
    np.testing.assert_array_equal(act_norm.log_scale.numpy(), log_scale)


def test_inside_tf_function_the_initialisation_happens_once():
    act_norm, y = ActNorm(EVENT), _batch(dtype="float32")
    step = tf.function(lambda y: act_norm.inverse(y, training=True), jit_compile=True)
    first = step(y)
    # A float32 mean of normalised values of order 1: rounding ~1e-7 each, 1e-5 in all leaves room.
    np.testing.assert_allclose(np.mean(first), 0.0, atol=1e-5)
    second = step(y * 2.0)  # initialised: the same map, so twice the output plus the shifted mean
    # XLA's float32 affine map of values of order 1 against numpy's: a few ulps, 1e-5 leaves room.
    np.testing.assert_allclose(second, 2.0 * first + act_norm.loc.numpy() * np.exp(-act_norm.log_scale.numpy()),
                               rtol=1e-5, atol=1e-5)


def _act_norm_flow(event_shape, *, seed, dtype):
    base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)), list(event_shape))
    return tfd.TransformedDistribution(base, tfb.Chain([ActNorm(event_shape, dtype=dtype, name="act_norm")]))


register_flow("test_act_norm", _act_norm_flow, replace=True)


def test_a_flow_model_initialises_it_in_fit_and_a_loaded_one_keeps_it(tmp_path):
    x = _batch(n=64, dtype="float32", event_shape=(4, 4, 1)).numpy()
    model = FlowModel(event_shape=(4, 4, 1), flow="test_act_norm", standardize=False)
    (act_norm,) = model.flow_layers
    assert act_norm.initialized.numpy() == 0  # FlowModel's build on a zero batch runs in inference
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=1)
    model.fit(x, epochs=1, batch_size=64, shuffle=False, verbose=0)
    assert act_norm.initialized.numpy() == 1
    # Initialised to the batch, then one Adam step of at most ~1e-3 on each weight.
    np.testing.assert_allclose(act_norm.loc.numpy(), [x.mean()], atol=2e-3)
    np.testing.assert_allclose(act_norm.log_scale.numpy(), [np.log(x.std())], atol=2e-3)
    model.save(tmp_path / "act_norm.keras")
    loaded = keras.models.load_model(tmp_path / "act_norm.keras")
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))
    loaded.compile(keras.optimizers.Adam(1e-3), jit_compile=False, steps_per_execution=1)
    loaded.fit(x * 10.0, epochs=1, batch_size=64, verbose=0)  # data of another scale: trained, not re-initialised
    # One Adam step of lr 1e-3 moves loc by at most ~1e-3; initialising again would move it from ~1.5 to ~15.
    np.testing.assert_allclose(loaded.flow_layers[0].loc.numpy(), act_norm.loc.numpy(), atol=2e-3)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0; got -1"):
        ActNorm((4,), epsilon=-1)
    with pytest.raises(ValueError, match=r"input of shape \(3, 5\) does not end in the event shape \[4\]"):
        ActNorm((4,)).inverse(tf.zeros([3, 5]), training=True)
