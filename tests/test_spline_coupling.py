"""SplineCoupling: the identity at zero output, identity tails, knots and edges, finite gradients."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import MLPConditioner, SplineCoupling, real_nvp
from tfp_realnvp.bijectors.spline_coupling import MAX_BINS, rational_quadratic_spline

K, B = 4, 3.0
PARAMS = 3 * K - 1
# Uniform bin widths (raw width logits 0) put the knots at -B + 2B k / K, exact in binary for B = 3, K = 4.
KNOTS = np.linspace(-B, B, K + 1)
INPUTS = np.concatenate([KNOTS, [-1e4, 1e4, -B - 1e-3, B + 1e-3, np.nextafter(B, 0.0), 0.3, -2.2]])


def _params(rng: np.random.Generator, n: int, scale: float, uniform_widths: bool = False) -> np.ndarray:
    params = scale * rng.standard_normal((n, PARAMS))
    if uniform_widths:
        params[:, :K] = 0.0
    return params


def _spline_coupling(size=3, num_masked=1, dtype="float32", context_size=0, **kwargs) -> SplineCoupling:
    needed = SplineCoupling.params_size((size - abs(num_masked),), kwargs.get("num_bins", 8))
    conditioner = MLPConditioner((8,), output_shape=(-(-needed // 2),), context_size=context_size, dtype=dtype,
                                 seed=0)
    return SplineCoupling(conditioner, num_masked=num_masked, event_shape=(size,), **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zero_conditioner_output_is_the_identity_slopes_included(dtype):
    x = tf.constant(INPUTS, dtype)
    for inverse in (False, True):
        y, log_derivative = rational_quadratic_spline(x, tf.zeros([len(INPUTS), PARAMS], dtype), tail_bound=B,
                                                      inverse=inverse)
        # Uniform bins and unit derivatives: y = y_k + h t, exact up to one rounding of the knots.
        np.testing.assert_allclose(y, INPUTS, rtol=0, atol=4 * np.finfo(dtype).eps * B)
        np.testing.assert_allclose(log_derivative, 0.0, atol=4 * np.finfo(dtype).eps)
    coupling = _spline_coupling(dtype=dtype)  # a fresh coupling: the conditioner's last layer is zero
    z = tf.constant(np.random.default_rng(0).normal(size=(5, 3)) * 4, dtype)
    np.testing.assert_allclose(coupling.forward(z), z, atol=1e-6)
    np.testing.assert_allclose(coupling.forward_log_det_jacobian(z, event_ndims=1), 0.0, atol=1e-6)


def test_tails_outside_the_box_are_the_identity():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(B, 50.0, 50), -rng.uniform(B, 50.0, 50), [1e4, -1e4]])
    params = tf.constant(_params(rng, len(x), 3.0), tf.float32)
    for inverse in (False, True):
        y, log_derivative = rational_quadratic_spline(tf.constant(x, tf.float32), params, tail_bound=B, inverse=inverse)
        np.testing.assert_array_equal(y, x.astype(np.float32))
        np.testing.assert_array_equal(log_derivative, 0.0)


def test_bins_and_derivatives_keep_their_minimums_at_extreme_outputs():
    rng = np.random.default_rng(2)
    params = tf.constant(_params(rng, 2000, 1e6), tf.float32)
    x = tf.constant(rng.uniform(-B, B, 2000), tf.float32)
    _, log_derivative = rational_quadratic_spline(x, params, tail_bound=B)
    # The slope inside a bin stays above s^2 min(d, s) / max(s, d)^2 with s >= 0.01 / 0.93 and d in [0.01, 10].
    assert np.all(np.isfinite(log_derivative)) and np.min(log_derivative) > np.log(1e-9)


def test_float64_log_det_matches_autodiff_inside_outside_at_the_edge_and_on_knots():
    rng = np.random.default_rng(3)
    x = tf.constant(INPUTS, tf.float64)
    params = tf.constant(_params(rng, len(INPUTS), 1.0, uniform_widths=True), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, log_derivative = rational_quadratic_spline(x, params, tail_bound=B)
    # Each output depends on its own input only: the gradient of the sum is the derivative.
    # On a knot autodiff takes the bin above; the spline's derivative is continuous there.
    np.testing.assert_allclose(log_derivative, np.log(tape.gradient(y, x)), rtol=1e-9, atol=1e-9)
    with tf.GradientTape() as tape:
        tape.watch(y)
        x_back, inverse_log_derivative = rational_quadratic_spline(y, params, tail_bound=B, inverse=True)
    np.testing.assert_allclose(x_back, INPUTS, rtol=1e-9, atol=1e-9)  # knots of y are y's own knots here
    np.testing.assert_allclose(inverse_log_derivative, -np.log(tape.gradient(x_back, y)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype, mode", [("float32", "eager"), ("float64", "eager"), ("float64", "function"),
                                         ("float32", "xla")])
def test_values_and_gradients_finite_at_knots_edges_far_inputs_and_extreme_outputs(dtype, mode):
    rng = np.random.default_rng(4)
    x = tf.constant(np.tile(INPUTS, 3), dtype)
    params = tf.Variable(np.concatenate([_params(rng, len(INPUTS), s, uniform_widths=True) for s in (1, 1e4, 1e6)])
                         .astype(dtype))

    def values_and_gradients(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            outs = []
            for inverse in (False, True):
                outs += rational_quadratic_spline(x, params, tail_bound=B, inverse=inverse)
            total = tf.add_n([tf.reduce_sum(o) for o in outs])
        return outs, tape.gradient(total, [x, params])

    run = {"eager": values_and_gradients, "function": tf.function(values_and_gradients),
           "xla": tf.function(values_and_gradients, jit_compile=True)}[mode]
    outs, grads = run(x)
    for value in [*outs, *grads]:
        assert np.all(np.isfinite(value.numpy()))


def test_float32_round_trip_holds_at_moderate_parameters():
    rng = np.random.default_rng(5)
    x = tf.constant(rng.uniform(-B - 1, B + 1, 20000), tf.float32)
    params = tf.constant(_params(rng, 20000, 1.0), tf.float32)
    y, log_derivative = rational_quadratic_spline(x, params, tail_bound=B)
    x_back, log_derivative_back = rational_quadratic_spline(y, params, tail_bound=B, inverse=True)
    # Slopes of random unit-scale parameters stay above ~1e-2: float32's 3e-7 over them, ~1e-4.
    np.testing.assert_allclose(x_back, x, atol=1e-3)
    np.testing.assert_allclose(log_derivative_back, log_derivative, atol=1e-3)


def test_the_coupling_round_trips_and_calls_its_conditioner_once():
    coupling = _spline_coupling(size=4, num_masked=-2, num_bins=5, tail_bound=2.0)
    rng = np.random.default_rng(6)
    for w in coupling.trainable_variables:
        w.assign(0.5 * rng.standard_normal(w.shape))
    calls = []
    inner = coupling.conditioner.call
    coupling.conditioner.call = lambda *a, **k: calls.append(1) or inner(*a, **k)
    z = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    x = coupling.forward(tf.identity(z))
    assert len(calls) == 1
    np.testing.assert_array_equal(x[:, 2:], z[:, 2:])  # the unchanged part, bit-identical
    # float32 through one spline of random weights: slopes near 1, a few ulps of |x| <= 3.
    np.testing.assert_allclose(coupling.inverse(tf.identity(x)), z, atol=1e-5)
    fldj = coupling.forward_log_det_jacobian(tf.identity(z), event_ndims=1)
    ildj = coupling.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
    np.testing.assert_allclose(fldj, -ildj, atol=1e-5)
    assert coupling.keras_layers == (coupling.conditioner,)
    assert len(coupling.trainable_variables) == 4


def test_a_mask_and_a_context_reach_the_spline():
    mask = np.array([[True, False], [False, True]])
    conditioner = MLPConditioner((8,), output_shape=(2, -(-2 * 11 // 2)), event_ndims=2, context_size=3, seed=0)
    coupling = SplineCoupling(conditioner, mask=mask, num_bins=4)
    assert coupling.condition_keys == ("context",)
    for w in coupling.trainable_variables:
        w.assign(0.5 * np.random.default_rng(7).standard_normal(w.shape))
    x = tf.constant(np.random.default_rng(8).normal(size=(5, 2, 2)), tf.float32)
    c1, c2 = tf.zeros([5, 3]), tf.ones([5, 3])
    y1, y2 = coupling.forward(x, context=c1), coupling.forward(x, context=c2)
    np.testing.assert_array_equal(tf.boolean_mask(y1, mask, axis=1), tf.boolean_mask(x, mask, axis=1))
    assert not np.allclose(y1, y2)  # the context changes the map
    np.testing.assert_allclose(coupling.inverse(tf.identity(y2), context=c2), x, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_bins=1), r"num_bins must be an integer in \[2, 64\]; got 1"),
    (dict(num_bins=MAX_BINS + 1), r"num_bins must be an integer in \[2, 64\]; got 65"),
    (dict(tail_bound=0.0), r"tail_bound must be a finite number > 0; got 0.0"),
    (dict(tail_bound=float("inf")), r"tail_bound must be a finite number > 0; got inf"),
    (dict(mask=np.array([True, True])), r"mask must hold both True \(unchanged\) and False \(transformed\)"),
])
def test_bad_arguments_get_one_clear_error(kwargs, message):
    kwargs = {"num_masked": 1, **kwargs}
    if "mask" in kwargs:
        kwargs.pop("num_masked")
    with pytest.raises(ValueError, match=message):
        SplineCoupling(MLPConditioner((4,)), **kwargs)


def test_a_conditioner_too_small_for_the_parameters_is_named():
    coupling = SplineCoupling(MLPConditioner((4,), output_shape=(3,)), num_masked=1, event_shape=(2,), num_bins=4)
    with pytest.raises(ValueError, match=r"hold 6 values on the last axis; expected at least 11"):
        coupling.forward(tf.zeros([1, 2]))


def test_an_unknown_transform_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"transform must be one of 'affine', 'spline'; got 'flow'"):
        real_nvp(2, transform="flow")
