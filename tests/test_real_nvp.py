"""The real_nvp builder: structure, variables, reproducibility, and sample/log_prob agreement."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from conftest import LOGDET_RTOL, randomize
from tensorflow_probability.python.bijectors import chain
from tensorflow_probability.python.distributions import transformed_distribution

from tfp_realnvp import AffineCoupling, coupling_layers, keras_layers, permutation_indices, real_nvp

tfb = tfp.bijectors
tfd = tfp.distributions


def test_structure_is_a_chain_of_couplings_and_permutations():
    dist = real_nvp(5, num_couplings=3, hidden_units=(8,))
    # TFP hands back its non-CompositeTensor `_TransformedDistribution` for any bijector that
    # holds Keras layers or functions, as it does for its own tfb.RealNVP.
    stock = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(0.0, 1.0), [2]),
        tfb.RealNVP(num_masked=1, shift_and_log_scale_fn=lambda x, n: (x, x)),
    )
    assert type(dist) is type(stock)
    assert isinstance(dist, transformed_distribution._TransformedDistribution)
    assert isinstance(dist.bijector, chain._Chain)  # likewise tfb.Chain -> _Chain
    kinds = [type(b) for b in reversed(dist.bijector.bijectors)]
    assert kinds == [AffineCoupling, tfb.Permute, AffineCoupling, tfb.Permute, AffineCoupling]
    assert dist.event_shape == [5]
    assert [c.num_masked for c in coupling_layers(dist)] == [2, 2, 2]


def test_trainable_variables_list_every_conditioner_weight():
    hidden = (8, 8)
    dist = real_nvp(4, num_couplings=3, hidden_units=hidden)
    # Per coupling: (kernel, bias) for each hidden layer and the output layer, plus the tanh scale.
    per_coupling = 2 * (len(hidden) + 1) + 1
    assert len(dist.trainable_variables) == 3 * per_coupling
    weights = {id(w.value) for layer in keras_layers(dist) for w in layer.weights}
    assert weights == {id(v) for v in dist.trainable_variables}


def test_fresh_flow_is_the_base_distribution():
    dist = real_nvp(3, num_couplings=4, hidden_units=(8,))
    x = tf.random.stateless_normal([10, 3], seed=[0, 1])
    # Exact but for the permutations: the float32 sum of 3 log-densities, in another order (~1e-7).
    np.testing.assert_allclose(dist.log_prob(x), dist.distribution.log_prob(x), rtol=1e-6)


@pytest.mark.parametrize("permutation", ["reverse", "random"])
def test_same_seed_same_flow(permutation):
    a = real_nvp(6, num_couplings=4, hidden_units=(8,), permutation=permutation, seed=3)
    b = real_nvp(6, num_couplings=4, hidden_units=(8,), permutation=permutation, seed=3)
    for va, vb in zip(a.trainable_variables, b.trainable_variables):
        np.testing.assert_array_equal(va, vb)
    perms_a = [p.permutation.numpy() for p in a.bijector.bijectors if isinstance(p, tfb.Permute)]
    perms_b = [p.permutation.numpy() for p in b.bijector.bijectors if isinstance(p, tfb.Permute)]
    np.testing.assert_array_equal(perms_a, perms_b)


def test_random_permutations_depend_on_the_seed():
    a = permutation_indices(8, 4, permutation="random", seed=0)
    b = permutation_indices(8, 4, permutation="random", seed=1)
    assert len(a) == 3
    assert all(sorted(p) == list(range(8)) for p in a)
    assert any(not np.array_equal(p, q) for p, q in zip(a, b))
    np.testing.assert_array_equal(permutation_indices(4, 2), [[3, 2, 1, 0]])


def test_flow_log_det_matches_autodiff_jacobian():
    dist = real_nvp(5, num_couplings=4, hidden_units=(8,), permutation="random", dtype="float64")
    randomize(dist)
    x = tf.random.stateless_normal([6, 5], seed=[2, 3], dtype=tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = dist.bijector.inverse(x)
    _, expected = tf.linalg.slogdet(tape.batch_jacobian(z, x))
    ildj = dist.bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
    np.testing.assert_allclose(ildj, expected, rtol=LOGDET_RTOL)
    # log_prob = log N(z) + ildj.
    expected_lp = tfd.Normal(np.float64(0), 1).log_prob(z).numpy().sum(-1) + expected.numpy()
    np.testing.assert_allclose(dist.log_prob(x), expected_lp, rtol=LOGDET_RTOL)


def test_samples_agree_with_log_prob():
    # log_prob integrates to 1 over a grid, and moments of samples match moments under
    # exp(log_prob) on that grid. A flow whose log_prob and sample disagreed (a sign slip in
    # the inverse or the log-det) fails one or the other.
    dist = real_nvp(2, num_couplings=4, hidden_units=(16,), dtype="float64")
    randomize(dist, scale=0.3)
    grid = np.linspace(-10.0, 10.0, 601)
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel()], axis=-1)
    density = np.exp(dist.log_prob(points).numpy())
    cell = (grid[1] - grid[0]) ** 2
    # Riemann sum of a smooth density on a 0.033 grid: error well below 1e-3.
    assert abs(density.sum() * cell - 1.0) < 1e-3
    grid_mean = (points * density[:, None]).sum(0) * cell
    grid_second = (points**2 * density[:, None]).sum(0) * cell
    samples = dist.sample(200_000, seed=7).numpy()
    std_err = samples.std(0) / np.sqrt(len(samples))
    # Monte Carlo error of a mean of 2e5 draws: 5 standard errors.
    np.testing.assert_array_less(np.abs(samples.mean(0) - grid_mean), 5 * std_err)
    second_err = (samples**2).std(0) / np.sqrt(len(samples))
    np.testing.assert_array_less(np.abs((samples**2).mean(0) - grid_second), 5 * second_err)
    # The randomised flow is far from the standard normal, so this tested something.
    assert np.max(np.abs(grid_mean)) > 0.05 or np.max(np.abs(grid_second - 1)) > 0.05


def test_every_weight_gets_a_gradient_from_log_prob_after_one_step():
    dist = real_nvp(3, num_couplings=3, hidden_units=(8, 8), permutation="random")
    x = tf.random.stateless_normal([128, 3], seed=[4, 5]) * [1.0, 2.0, 0.5] + 1.0
    variables = dist.trainable_variables
    for step in range(2):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        grads = tape.gradient(loss, variables)
        if step == 0:
            for v, g in zip(variables, grads):
                v.assign_sub(0.05 * g)
    for v, g in zip(variables, grads):
        assert g is not None, f"no gradient for {v.name}"
        assert np.any(g.numpy() != 0), f"zero gradient for {v.name}"


def test_log_prob_eager_function_and_xla_agree():
    dist = real_nvp(4, num_couplings=3, hidden_units=(8,), permutation="random")
    randomize(dist)
    x = tf.random.stateless_normal([16, 4], seed=[6, 7])
    eager = dist.log_prob(x)
    graph = tf.function(dist.log_prob)(x)
    xla = tf.function(dist.log_prob, jit_compile=True)(x)
    # float32 through 3 couplings, XLA free to fuse: ~1e-6 relative.
    np.testing.assert_allclose(graph, eager, rtol=1e-5)
    np.testing.assert_allclose(xla, eager, rtol=1e-5)
    samples = tf.function(lambda: dist.sample(8, seed=[1, 2]), jit_compile=True)()
    assert samples.shape == [8, 4]


@pytest.mark.parametrize("bound", ["tanh", "sigmoid", "unbounded"])
def test_log_scale_bound_is_passed_to_every_coupling(bound):
    dist = real_nvp(2, num_couplings=2, hidden_units=(4,), log_scale_bound=bound)
    assert {c.log_scale_bound for c in coupling_layers(dist)} == {bound}


def test_float64_flow_keeps_its_dtype():
    dist = real_nvp(3, num_couplings=2, hidden_units=(4,), dtype="float64")
    assert dist.dtype == tf.float64
    assert dist.log_prob(np.zeros([2, 3])).dtype == tf.float64
    assert all(v.dtype == tf.float64 for v in dist.trainable_variables)


def test_explicit_permutations_are_used_as_given():
    indices = [[2, 0, 1], [1, 2, 0]]
    dist = real_nvp(3, num_couplings=3, hidden_units=(4,), permutation=indices)
    used = [p.permutation.numpy().tolist() for p in reversed(dist.bijector.bijectors) if isinstance(p, tfb.Permute)]
    assert used == indices
    # A vector event given as a shape is the same flow as one given as a size.
    same = real_nvp((3,), num_couplings=3, hidden_units=(4,), permutation=indices)
    for a, b in zip(dist.trainable_variables, same.trainable_variables):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="real_nvp is a flow over vectors: event_shape must be an integer >= 2 .*got 1"):
        real_nvp(1)
    with pytest.raises(ValueError, match=r"real_nvp is a flow over vectors.*got \(4, 4, 1\)"):
        real_nvp((4, 4, 1))
    with pytest.raises(ValueError, match="num_couplings must be an integer >= 1; got 0"):
        real_nvp(2, num_couplings=0)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'; got 'int32'"):
        real_nvp(2, dtype="int32")
    with pytest.raises(ValueError, match=r"permutation must be one of \('reverse', 'random', 'lu'\) or a list of index "
                                         r"lists; got 'shuffle'"):
        real_nvp(2, permutation="shuffle")
    with pytest.raises(ValueError, match="permutation holds 1 index lists; expected num_couplings - 1 = 2"):
        real_nvp(3, num_couplings=3, permutation=[[0, 1, 2]])
    with pytest.raises(ValueError, match=r"permutation\[1\] must be a permutation of 0..2; got \[0, 0, 1\]"):
        real_nvp(3, num_couplings=3, permutation=[[0, 1, 2], [0, 0, 1]])
    with pytest.raises(ValueError, match="needs an integer seed"):
        real_nvp(2, permutation="random", seed=None)
    dist = real_nvp(3, num_couplings=2, hidden_units=(4,))
    with pytest.raises(ValueError, match="event size 4 does not match the coupling's 3"):
        dist.log_prob(tf.zeros([2, 4]))
