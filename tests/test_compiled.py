"""Compiled eager calls: one XLA program per shape class, the same numbers as the plain calls."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import FlowModel
from tfp_realnvp.compiled import Bucketed, bucket

# XLA fuses the flow's float32 arithmetic differently from TensorFlow's kernels: a few ulps of
# values of order 1-10 (ulp ~1e-6 at 10).
RTOL32 = 1e-5
ATOL32 = 1e-5


def test_buckets_are_powers_of_two_up_to_the_largest():
    assert [bucket(n) for n in (1, 2, 3, 4, 5, 1000, 4096)] == [1, 2, 4, 4, 8, 1024, 4096]
    assert bucket(7, max_rows=4) == 4


def test_bucketed_pads_cuts_and_chunks():
    calls = []

    def fn(x, scale):
        calls.append(tuple(x.shape))
        return {"y": x * 2.0, "n": tf.reduce_sum(tf.ones_like(x[:, 0]))[None] * tf.ones_like(x[:, :1])}

    square = Bucketed(fn, max_rows=4, jit_compile=False)
    x = tf.reshape(tf.range(14, dtype=tf.float32), [7, 2])
    out = square(x, None)
    np.testing.assert_array_equal(out["y"], x * 2.0)
    # 7 rows: a chunk of 4, then 3 padded to 4; each chunk saw 4 rows.
    np.testing.assert_array_equal(out["n"][:, 0], [4.0] * 7)
    assert calls == [(4, 2)] and square.traces == 1  # both chunks ran one compiled shape
    square(x[:1], None)
    square(x[:2], None)
    assert square.traces == 3 and calls[1:] == [(1, 2), (2, 2)]


@pytest.fixture(scope="module")
def model() -> FlowModel:
    model = FlowModel(3, num_couplings=3, hidden_units=(16,), integer_levels=None, seed=2)
    rng = np.random.default_rng(0)
    model.adapt(rng.standard_normal((100, 3)))
    for v in model.trainable_variables:
        v.assign(0.3 * rng.standard_normal(v.shape).astype(np.float32))
    return model


def test_eager_calls_agree_with_the_plain_distribution(model):
    x = np.random.default_rng(1).standard_normal((37, 3)).astype("float32")
    plain = model.distribution.log_prob(tf.constant(x))  # op by op, no XLA
    np.testing.assert_allclose(model.log_prob(x), plain, rtol=RTOL32, atol=ATOL32)
    np.testing.assert_allclose(model(x), plain, rtol=RTOL32, atol=ATOL32)
    # Sampling draws TensorFlow's own normals, so it matches the export's graph (no XLA) too.
    graph = tf.function(lambda: model.sample(9, seed=4, temperature=0.8))()
    np.testing.assert_allclose(model.sample(9, seed=4, temperature=0.8), graph, rtol=RTOL32, atol=ATOL32)


def test_any_batch_size_reuses_a_shape_class():
    model = FlowModel(3, num_couplings=2, hidden_units=(8,), standardize=False)  # no shape class compiled yet
    x = np.random.default_rng(2).standard_normal((5000, 3)).astype("float32")
    before = model._compiled.log_prob.traces  # pylint: disable=protected-access
    for n in (1, 2, 3, 5, 7, 8, 100, 127, 4096, 5000):
        assert model.log_prob(x[:n]).shape == (n,)
    # Shape classes 1, 2, 4, 8, 128, 4096 (5000 = 4096 + 904 -> 1024): 7 programs for 10 sizes.
    assert model._compiled.log_prob.traces - before == 7  # pylint: disable=protected-access
    for n in (6, 7, 120, 3000):  # classes 8, 8, 128, 4096, all compiled already: nothing new
        model.log_prob(x[:n])
    assert model._compiled.log_prob.traces - before == 7  # pylint: disable=protected-access


def test_training_mode_and_graphs_take_the_plain_path(model):
    x = np.zeros((4, 3), "float32")
    traces = model._compiled.log_prob.traces  # pylint: disable=protected-access
    model.log_prob(x, training=True)
    tf.function(model.log_prob)(tf.constant(x))
    assert model._compiled.log_prob.traces == traces  # pylint: disable=protected-access
