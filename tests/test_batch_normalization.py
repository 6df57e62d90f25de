"""BatchNormalization: a bijector with running statistics, consistent in inference, updated only in training."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from _bijector_checks import (assert_batch_shapes, assert_eager_function_and_xla_agree, assert_fldj_is_minus_ildj,
                              assert_log_det_matches_autodiff, assert_round_trip)

from tfp_realnvp import BatchNormalization, FlowModel
from tfp_realnvp.flows import register_flow

tfb = tfp.bijectors
tfd = tfp.distributions

EVENT = (4, 4, 2)


def _randomized(dtype="float64", event_shape=EVENT, seed=0):
    """A batch norm whose scale, shift and running statistics are all away from their initial values."""
    bn = BatchNormalization(event_shape, dtype=dtype)
    rng = np.random.default_rng(seed)
    c = event_shape[-1]
    for variable, value in ((bn._layer.log_gamma, 0.3 * rng.standard_normal(c)), (bn._layer.beta, rng.standard_normal(c)),
                            (bn.moving_mean, rng.standard_normal(c)), (bn.moving_variance, rng.uniform(0.5, 2.0, c))):
        variable.assign(value.astype(dtype))
    return bn


def _batch(n=6, dtype="float64", event_shape=EVENT, seed=1):
    rng = np.random.default_rng(seed)
    return tf.constant(3.0 * rng.standard_normal((n, *event_shape)) + 1.5, dtype)


def _statistics(bn):
    return bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()


def test_inference_mode_is_one_bijector_forward_and_back(dtype):
    bn, x = _randomized(dtype), _batch(dtype=dtype)
    for training in (False, None):  # the default is inference
        kwargs = {} if training is None else {"training": training}
        assert_round_trip(bn, x, **kwargs)
        assert_fldj_is_minus_ildj(bn, x, event_ndims=3, **kwargs)
    assert_log_det_matches_autodiff(_randomized(), _batch(), event_ndims=3)
    assert_batch_shapes(bn, x, event_ndims=3)
    assert_eager_function_and_xla_agree(_randomized("float32"), _batch(dtype="float32"), event_ndims=3)


def test_log_det_is_the_papers():
    bn, y = _randomized(), _batch()
    gamma, variance = np.exp(bn._layer.log_gamma.numpy()), bn.moving_variance.numpy()
    expected = 16 * np.sum(np.log(gamma) - 0.5 * np.log(variance + bn.epsilon))  # 4x4 entries per channel
    # Here and below: the same few float64 operations in numpy and TF, ~1e-15 relative; 1e-12 leaves margin.
    np.testing.assert_allclose(bn.inverse_log_det_jacobian(y, event_ndims=3), np.full(6, expected), rtol=1e-12)
    # In training, the batch's own variance (biased, over the batch and the 4x4 pixels).
    batch_variance = y.numpy().reshape(-1, 2).var(axis=0)
    expected = 16 * np.sum(np.log(gamma) - 0.5 * np.log(batch_variance + bn.epsilon))
    np.testing.assert_allclose(bn.inverse_log_det_jacobian(y, event_ndims=3, training=True), np.full(6, expected),
                               rtol=1e-12)
    # ... of the normalisation with the batch's statistics held fixed: what autodiff sees of it.
    assert_log_det_matches_autodiff(_frozen(bn, y), y, event_ndims=3)


def _frozen(bn, y):
    """The inference-mode bijector whose running statistics are `y`'s batch statistics."""
    frozen = BatchNormalization(EVENT, dtype="float64")
    for target, source in zip(frozen._layer.weights, bn._layer.weights):
        target.assign(source.numpy())
    flat = y.numpy().reshape(-1, 2)
    frozen.moving_mean.assign(flat.mean(axis=0))
    frozen.moving_variance.assign(flat.var(axis=0))
    # The same float64 map, its statistics from numpy instead of TF: ~1e-15 relative; 1e-12 leaves margin.
    np.testing.assert_allclose(frozen.inverse(y), bn.inverse(tf.identity(y), training=True), rtol=1e-12)
    return frozen


def test_statistics_change_only_in_training():
    bn, y = _randomized(), _batch()
    before = _statistics(bn)
    bn.inverse(tf.identity(y))
    bn.inverse(tf.identity(y), training=False)
    bn.forward(tf.identity(y), training=True)  # forward uses the running statistics, and keeps them
    bn.inverse_log_det_jacobian(tf.identity(y), event_ndims=3, training=True)  # the log-det alone: no update
    for got, want in zip(_statistics(bn), before):
        np.testing.assert_array_equal(got, want)
    x = bn.inverse(tf.identity(y), training=True)
    # The batch comes out normalised to the shift and scale...
    flat = x.numpy().reshape(-1, 2)
    # float64 means over 96 entries per channel: ~1e-15 off; 1e-10 leaves margin.
    np.testing.assert_allclose(flat.mean(axis=0), bn._layer.beta.numpy(), atol=1e-10)
    # epsilon 1e-4 added to a batch variance of ~9 shrinks the std by epsilon / (2 var) ~ 6e-6 relative.
    np.testing.assert_allclose(flat.std(axis=0), np.exp(bn._layer.log_gamma.numpy()), rtol=1e-4)
    # ... and the running statistics moved once: moving <- 0.99 moving + 0.01 batch (float64, a few
    # operations in numpy and in TF: ~1e-15 relative; 1e-12 leaves margin).
    batch = y.numpy().reshape(-1, 2)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.99 * before[0] + 0.01 * batch.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.99 * before[1] + 0.01 * batch.var(axis=0), rtol=1e-12)


def _batch_norm_flow(event_shape, *, seed, dtype, momentum=0.9):
    base = tfd.Sample(tfd.Normal(tf.zeros([], dtype), tf.ones([], dtype)), list(event_shape))
    return tfd.TransformedDistribution(base, tfb.Chain([BatchNormalization(event_shape, momentum=momentum,
                                                                           dtype=dtype, name="bn")]))


register_flow("test_batch_norm", _batch_norm_flow, replace=True)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model of one batch norm, fitted one XLA-compiled step on one batch, and saved."""
    x = _batch(n=64, dtype="float32", event_shape=(4, 4, 1)).numpy()
    model = FlowModel(event_shape=(4, 4, 1), flow="test_batch_norm", standardize=False)
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=True, steps_per_execution=1)
    model.fit(x, epochs=1, batch_size=64, shuffle=False, verbose=0)
    path = tmp_path_factory.mktemp("batch_norm") / "bn.keras"
    model.save(path)
    return model, x, path


def test_fit_under_xla_updates_the_statistics_once_per_step(fitted):
    model, x, _ = fitted
    (bn,) = model.flow_layers
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) >= 2
    # One step of momentum 0.9 from (0, 1); float32 statistics of 1024 values: ~1e-6 relative.
    np.testing.assert_allclose(bn.moving_mean.numpy(), [0.1 * x.mean()], rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), [0.9 + 0.1 * x.var()], rtol=1e-4)
    before = [w.numpy().copy() for w in model.non_trainable_weights]
    model.evaluate(x, verbose=0)
    model.log_prob(x)
    model.sample(5, seed=0)
    for got, want in zip(model.non_trainable_weights, before):
        np.testing.assert_array_equal(got.numpy(), want)


def test_statistics_survive_a_keras_round_trip(fitted):
    model, x, path = fitted
    loaded = keras.models.load_model(path)
    for got, want in zip(loaded.flow_layers[0].weights, model.flow_layers[0].weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))
    np.testing.assert_array_equal(loaded.sample(4, seed=2), model.sample(4, seed=2))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, 1\); got 1.0"):
        BatchNormalization((4,), momentum=1.0)
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0; got 0"):
        BatchNormalization((4,), epsilon=0)
    with pytest.raises(ValueError, match=r"event_shape must be positive integers such as \[8, 8, 1\]; got \(\)"):
        BatchNormalization(())
    bn = BatchNormalization((4, 4, 2))
    with pytest.raises(ValueError, match=r"input of shape \(3, 4, 4, 1\) does not end in the event shape \[4, 4, 2\]"):
        bn.inverse(tf.zeros([3, 4, 4, 1]))
    with pytest.raises(TypeError, match="training must be True, False or None; got <tf.Tensor"):
        bn.inverse(tf.zeros([3, 4, 4, 2]), training=tf.constant(True))
