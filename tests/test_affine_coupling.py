"""Properties of AffineCoupling, run over every variant in conftest.VARIANTS."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import LOGDET_RTOL, VARIANTS, randomize, tolerances

from tfp_realnvp import AffineCoupling, MLPConditioner

tfb = tfp.bijectors


def _coupling(variant, dtype, seed=0):
    coupling = variant.make(dtype)
    randomize(coupling, seed)
    return coupling


def _inputs(variant, dtype, batch_shape=(7,), seed=0):
    rng = np.random.default_rng(seed + 100)
    return tf.constant(rng.standard_normal(batch_shape + variant.event_shape), dtype=dtype)


def _unchanged(variant, coupling, x):
    """The entries the coupling must leave alone, as a flat array per batch member."""
    x = x.numpy()
    if coupling.mask is not None:
        return x[..., coupling.mask]
    d = coupling.num_masked
    return x[..., :d] if d > 0 else x[..., d:]


def test_round_trip_both_ways(variant, dtype):
    coupling = _coupling(variant, dtype)
    x = _inputs(variant, dtype)
    # tf.identity defeats TFP's cache, which would otherwise hand back the input itself.
    y = coupling.forward(tf.identity(x))
    x_again = coupling.inverse(tf.identity(y))
    np.testing.assert_allclose(x_again, x, **tolerances(x.dtype))
    y_again = coupling.forward(tf.identity(coupling.inverse(tf.identity(y))))
    np.testing.assert_allclose(y_again, y, **tolerances(x.dtype))
    # The transform is not the identity, so the round trip tested something.
    assert np.max(np.abs(y - x)) > 1e-2


def test_fldj_equals_minus_ildj(variant, dtype):
    coupling = _coupling(variant, dtype)
    x = _inputs(variant, dtype)
    y = coupling.forward(tf.identity(x))
    fldj = coupling.forward_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims)
    ildj = coupling.inverse_log_det_jacobian(tf.identity(y), event_ndims=variant.event_ndims)
    np.testing.assert_allclose(fldj, -ildj, **tolerances(x.dtype))
    assert np.max(np.abs(fldj)) > 1e-3


def test_log_det_matches_autodiff_jacobian(variant):
    coupling = _coupling(variant, "float64")
    x = _inputs(variant, "float64", batch_shape=(6,))
    size = int(np.prod(variant.event_shape))
    flat = tf.reshape(x, [6, size])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y = coupling.forward(tf.reshape(flat, x.shape))
        y_flat = tf.reshape(y, [6, size])
    jacobian = tape.batch_jacobian(y_flat, flat)
    _, expected = tf.linalg.slogdet(jacobian)
    fldj = coupling.forward_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims)
    np.testing.assert_allclose(fldj, expected, rtol=LOGDET_RTOL)
    # Inverse direction, against the Jacobian of the inverse.
    y = tf.identity(coupling.forward(tf.identity(x)))
    y_flat = tf.reshape(y, [6, size])
    with tf.GradientTape() as tape:
        tape.watch(y_flat)
        x_back = tf.reshape(coupling.inverse(tf.reshape(y_flat, x.shape)), [6, size])
    _, expected_inverse = tf.linalg.slogdet(tape.batch_jacobian(x_back, y_flat))
    ildj = coupling.inverse_log_det_jacobian(tf.identity(y), event_ndims=variant.event_ndims)
    np.testing.assert_allclose(ildj, expected_inverse, rtol=LOGDET_RTOL)


def test_unchanged_part_is_bit_identical(variant, dtype):
    coupling = _coupling(variant, dtype)
    x = _inputs(variant, dtype)
    y = coupling.forward(tf.identity(x))
    np.testing.assert_array_equal(_unchanged(variant, coupling, y), _unchanged(variant, coupling, x))
    x_back = coupling.inverse(tf.identity(y))
    np.testing.assert_array_equal(_unchanged(variant, coupling, x_back), _unchanged(variant, coupling, y))


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)], ids=["unbatched", "batch3", "batch2x3"])
def test_shapes_and_dtype(variant, dtype, batch_shape):
    coupling = _coupling(variant, dtype)
    x = _inputs(variant, dtype, batch_shape=batch_shape)
    y = coupling.forward(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert coupling.inverse(tf.identity(y)).shape == x.shape
    fldj = coupling.forward_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims)
    assert fldj.shape == batch_shape and fldj.dtype == x.dtype
    # Each batch member is transformed on its own: batched == one by one.
    if batch_shape:
        flat_x = tf.reshape(x, (-1,) + variant.event_shape)
        singles = [coupling.forward(tf.identity(flat_x[i])) for i in range(flat_x.shape[0])]
        np.testing.assert_allclose(
            tf.reshape(y, flat_x.shape), tf.stack(singles), **tolerances(x.dtype)
        )


def test_eager_function_and_xla_agree(variant):
    coupling = _coupling(variant, "float32")
    x = _inputs(variant, "float32")

    def run(x):
        y = coupling.forward(x)
        fldj = coupling.forward_log_det_jacobian(x, event_ndims=variant.event_ndims)
        return y, fldj, coupling.inverse(tf.identity(y))

    eager = run(tf.identity(x))
    graph = tf.function(run)(tf.identity(x))
    xla = tf.function(run, jit_compile=True)(tf.identity(x))
    for e, g, j in zip(eager, graph, xla):
        # XLA may fuse and reorder float32 arithmetic: a few ulps.
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(j, e, rtol=1e-5, atol=1e-5)


def test_log_prob_evaluates_each_conditioner_once(variant):
    coupling = _coupling(variant, "float32")
    calls = []
    inner = coupling.conditioner

    def counting(x, **kwargs):
        calls.append(1)
        return inner(x, **kwargs)

    counted = AffineCoupling(
        counting,
        num_masked=coupling.num_masked,
        mask=coupling.mask,
        event_shape=variant.event_shape,
        log_scale_bound=coupling.log_scale_bound,
    )
    x = _inputs(variant, "float32")
    y = counted.inverse(x)
    counted.inverse_log_det_jacobian(x, event_ndims=variant.event_ndims)
    assert len(calls) == 1
    counted.forward(y)  # cached: no evaluation
    counted.forward_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims)
    assert len(calls) == 2


def test_composes_with_invert_and_chain(variant):
    coupling = _coupling(variant, "float64")
    x = _inputs(variant, "float64")
    inverted = tfb.Invert(coupling)
    np.testing.assert_allclose(inverted.forward(tf.identity(x)), coupling.inverse(tf.identity(x)))
    np.testing.assert_allclose(
        inverted.forward_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims),
        coupling.inverse_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims),
    )
    second = _coupling(variant, "float64", seed=1)
    chain = tfb.Chain([second, tfb.Scale(tf.constant(2.0, tf.float64)), coupling])
    y = chain.forward(tf.identity(x))
    np.testing.assert_allclose(y, second.forward(2.0 * coupling.forward(tf.identity(x))), rtol=1e-12)
    size = int(np.prod(variant.event_shape))
    expected = (
        coupling.forward_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims)
        + size * np.log(2.0)
        + second.forward_log_det_jacobian(
            2.0 * coupling.forward(tf.identity(x)), event_ndims=variant.event_ndims
        )
    )
    np.testing.assert_allclose(
        chain.forward_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims),
        expected,
        rtol=1e-12,
    )
    np.testing.assert_allclose(chain.inverse(tf.identity(y)), x, **tolerances(tf.float64))


def test_every_weight_gets_a_gradient_after_one_step(variant):
    coupling = variant.make("float32")
    variables = coupling.trainable_variables
    assert variables, "the coupling exposes no trainable variables"
    x = _inputs(variant, "float32", batch_shape=(64,))

    def nll():
        z = coupling.inverse(tf.identity(x))
        ildj = coupling.inverse_log_det_jacobian(tf.identity(x), event_ndims=variant.event_ndims)
        axes = list(range(1, 1 + variant.event_ndims))
        return -tf.reduce_mean(-0.5 * tf.reduce_sum(z**2, axis=axes) + ildj)

    with tf.GradientTape() as tape:
        loss = nll()
    for v, g in zip(variables, tape.gradient(loss, variables)):
        if g is not None:
            v.assign_sub(0.1 * g)
    with tf.GradientTape() as tape:
        loss = nll()
    for v, g in zip(variables, tape.gradient(loss, variables)):
        assert g is not None, f"no gradient for {v.name}"
        assert np.any(g.numpy() != 0), f"zero gradient for {v.name}"


def test_condition_kwargs_are_passed_to_the_conditioner():
    conditioner = MLPConditioner((8,), output_shape=(2,), context_size=3, seed=0)
    coupling = AffineCoupling(conditioner, num_masked=1, event_shape=(3,))
    randomize(coupling)
    x = tf.random.stateless_normal([4, 3], seed=[1, 2])
    context_a = tf.zeros([4, 3])
    context_b = tf.ones([4, 3])
    y_a = coupling.forward(x, context=context_a)
    y_b = coupling.forward(x, context=context_b)
    assert np.max(np.abs(y_a - y_b)) > 1e-3
    np.testing.assert_allclose(coupling.inverse(tf.identity(y_b), context=context_b), x, rtol=1e-5, atol=1e-5)
    chain = tfb.Chain([tfb.Shift(1.0), coupling])
    y_chain = chain.forward(x, **{coupling.name: {"context": context_b}})
    np.testing.assert_allclose(y_chain, y_b + 1.0, rtol=1e-6)


def test_trainable_variables_before_first_call():
    coupling = VARIANTS["count"].make("float32")
    # 3 dense layers (kernel + bias) and the tanh bound's scale.
    assert len(coupling.trainable_variables) == 7
    assert all(isinstance(v, tf.Variable) for v in coupling.trainable_variables)


def test_lazy_event_shape_from_first_input():
    coupling = AffineCoupling(MLPConditioner((8,), output_shape=(3,)), num_masked=-3)
    assert coupling.event_shape is None
    coupling.forward(tf.zeros([2, 6]))
    assert coupling.event_shape == (6,)
    assert len(coupling.trainable_variables) == 5


def _plain_conditioner(x1):
    """A conditioner that is a plain function, not a Keras layer: (shift, raw log-scale) of x1."""
    return tf.concat([0.3 * x1, -0.2 * x1], axis=-1), tf.concat([0.5 * x1, 0.4 * tf.sin(x1)], axis=-1)


def _keras_conditioner(dtype):
    conditioner = MLPConditioner((8,), output_shape=(2,), dtype=dtype, seed=0)
    conditioner.build((None, 1))
    for v in conditioner.weights:  # a fresh conditioner outputs zeros: the identity map
        v.assign(np.full(v.shape, 0.3, v.dtype))
    return conditioner


def test_a_plain_callable_sees_the_event_size_checked_on_the_first_call():
    # Its bound's layer is made at the first call; the event size is still checked there.
    coupling = AffineCoupling(_plain_conditioner, num_masked=1, event_shape=(3,))
    with pytest.raises(ValueError, match="event size 4 does not match the coupling's 3"):
        coupling.forward(tf.zeros([2, 4]))


@pytest.mark.parametrize("bound", ["tanh", "sigmoid", "unbounded"])
@pytest.mark.parametrize("kind", ["keras_layer", "plain_callable"])
def test_every_bound_follows_the_input_dtype(bound, kind, dtype):
    # The bug: with a plain-function conditioner the tanh bound's learned scale was float32,
    # and a float64 input failed inside TensorFlow ("cannot compute Mul").
    conditioner = _plain_conditioner if kind == "plain_callable" else _keras_conditioner(dtype)
    coupling = AffineCoupling(conditioner, num_masked=1, event_shape=(3,), log_scale_bound=bound)
    x = tf.constant(np.random.default_rng(0).standard_normal((5, 3)), dtype=dtype)
    y = coupling.forward(tf.identity(x))
    fldj = coupling.forward_log_det_jacobian(tf.identity(x), event_ndims=1)
    assert y.dtype == fldj.dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(coupling.inverse(tf.identity(y)), x, **tolerances(x.dtype))
    assert all(v.dtype == tf.as_dtype(dtype) for v in coupling.trainable_variables)
    # The tanh bound's scale is a weight of the coupling, so a Keras model can track it.
    scales = [w for layer in coupling.keras_layers for w in layer.weights if "scale" in w.name]
    assert len(scales) == (1 if bound == "tanh" else 0)
    assert np.max(np.abs(y - x)) > 1e-2


def test_fresh_coupling_is_identity():
    coupling = VARIANTS["count_odd"].make("float32")
    x = _inputs(VARIANTS["count_odd"], "float32")
    np.testing.assert_array_equal(coupling.forward(x), x)
    np.testing.assert_array_equal(coupling.forward_log_det_jacobian(x, event_ndims=1), np.zeros(7))


# -- bad input ------------------------------------------------------------------------------


def _simple(**kwargs):
    kwargs.setdefault("num_masked", 2)
    return AffineCoupling(MLPConditioner((4,), output_shape=(3,)), **kwargs)


def test_wrong_event_size():
    coupling = _simple(event_shape=(5,))
    with pytest.raises(ValueError, match=r"event size 3 does not match the coupling's 5"):
        coupling.forward(tf.zeros([2, 3]))


def test_non_float_input():
    coupling = _simple(event_shape=(5,))
    with pytest.raises(TypeError, match=r"expects a floating-point input; got dtype int32"):
        coupling.forward(tf.zeros([2, 5], tf.int32))


def test_mask_of_wrong_shape():
    with pytest.raises(ValueError, match=r"mask shape \(2,\) does not match the event shape \(3,\)"):
        AffineCoupling(lambda x: (x, x), mask=[True, False], event_shape=(3,))
    coupling = AffineCoupling(MLPConditioner((4,)), mask=[True, False, False])
    with pytest.raises(ValueError, match=r"event size 4 does not match the coupling's 3"):
        coupling.forward(tf.zeros([2, 4]))


def test_mask_not_boolean():
    with pytest.raises(TypeError, match=r"mask must be boolean; got dtype int"):
        AffineCoupling(MLPConditioner((4,)), mask=np.array([1, 0, 1]))


@pytest.mark.parametrize("value", [True, False])
def test_mask_all_one_value(value):
    with pytest.raises(ValueError, match=rf"must hold both True .* got all {value} over shape \(2, 2\)"):
        AffineCoupling(MLPConditioner((4,)), mask=np.full((2, 2), value))


@pytest.mark.parametrize("num_masked", [0, 5, -5, 9])
def test_num_masked_out_of_range(num_masked):
    with pytest.raises(ValueError, match=rf"num_masked={num_masked} is out of range for event size 5"):
        _simple(num_masked=num_masked, event_shape=(5,))
    coupling = _simple(num_masked=num_masked)  # checked at the first call when no event shape
    with pytest.raises(ValueError, match=r"expected 1 <= \|num_masked\| <= 4"):
        coupling.forward(tf.zeros([1, 5]))


def test_num_masked_and_mask_exclusive():
    with pytest.raises(ValueError, match="exactly one of num_masked and mask"):
        AffineCoupling(MLPConditioner((4,)))
    with pytest.raises(ValueError, match="exactly one of num_masked and mask"):
        AffineCoupling(MLPConditioner((4,)), num_masked=1, mask=[True, False])
    with pytest.raises(TypeError, match="num_masked must be a Python int; got 1.5"):
        AffineCoupling(MLPConditioner((4,)), num_masked=1.5)


def test_conditioner_returning_wrong_shape():
    coupling = AffineCoupling(
        MLPConditioner((4,), output_shape=(2,)), num_masked=2, event_shape=(5,)
    )
    with pytest.raises(ValueError, match=r"conditioner returned shift of shape \(4, 2\); expected \(4, 3\)"):
        coupling.forward(tf.zeros([4, 5]))


def test_conditioner_returning_wrong_structure_or_dtype():
    coupling = AffineCoupling(lambda x: x, num_masked=1, event_shape=(2,))
    with pytest.raises(ValueError, match=r"must return a pair \(shift, log_scale\); got EagerTensor"):
        coupling.forward(tf.zeros([4, 2]))
    coupling = AffineCoupling(MLPConditioner((4,), output_shape=(1,)), num_masked=1, event_shape=(2,))
    with pytest.raises(TypeError, match=r"returned shift of dtype float32; expected float64"):
        coupling.forward(tf.zeros([4, 2], tf.float64))


def test_not_callable_and_unknown_bound():
    with pytest.raises(TypeError, match="conditioner must be callable; got 3"):
        AffineCoupling(3, num_masked=1)
    with pytest.raises(ValueError, match=r"log_scale_bound must be one of .*'tanh'.*; got 'clip'"):
        AffineCoupling(MLPConditioner((4,)), num_masked=1, log_scale_bound="clip")


def test_nan_input_with_validate_args():
    coupling = _simple(event_shape=(5,), validate_args=True)
    bad = tf.constant([[0.0, 1.0, np.nan, 0.0, 0.0]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="input has NaN or infinite values"):
        coupling.forward(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match="input has NaN or infinite values"):
        coupling.inverse_log_det_jacobian(tf.constant([[np.inf, 0, 0, 0, 0]], tf.float32), event_ndims=1)
    # Without validate_args the NaN propagates (no check op, no cost).
    assert np.isnan(_simple(event_shape=(5,)).forward(bad).numpy()).any()


def test_log_det_left_in_cache_matches_a_fresh_one(variant):
    # forward/inverse leave their log-det in TFP's cache; the LDJ methods then reuse it for
    # the same tensor. Both paths must give the same value.
    coupling = _coupling(variant, "float64")
    x = _inputs(variant, "float64")
    n = variant.event_ndims
    y = coupling.forward(x)
    cached = coupling.forward_log_det_jacobian(x, event_ndims=n)
    fresh = coupling.forward_log_det_jacobian(tf.identity(x), event_ndims=n)
    np.testing.assert_allclose(cached, fresh, rtol=1e-12)
    np.testing.assert_allclose(coupling.inverse_log_det_jacobian(y, event_ndims=n), -fresh, rtol=1e-12)
    y2 = tf.identity(y) + 0.1
    coupling.inverse(y2)
    cached = coupling.inverse_log_det_jacobian(y2, event_ndims=n)
    fresh = coupling.inverse_log_det_jacobian(tf.identity(y2), event_ndims=n)
    np.testing.assert_allclose(cached, fresh, rtol=1e-12)
    assert np.max(np.abs(fresh)) > 1e-3
