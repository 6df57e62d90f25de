"""real_nvp_multiscale: the paper's image architecture, its log-det, and the image model through the product."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from _bijector_checks import assert_log_det_matches_autodiff, assert_round_trip
from conftest import randomize

from tfp_realnvp import (ActNorm, AffineCoupling, BatchNormalization, FactorOut, FlowModel, Squeeze,
                         real_nvp_multiscale, serving_check)
from tfp_realnvp.choices import BUILTIN_FLOWS
from tfp_realnvp.data import load_dataset
from tfp_realnvp.export import CONFIG_ASSET, export_saved_model
from tfp_realnvp.training import TrainingConfig, fit_flow

tfb = tfp.bijectors

SMALL = dict(num_filters=4, num_blocks=1)  # small networks: quick to build and to differentiate
# The same float32 graph in TensorFlow's C++ session: an ulp or two of log p(x) ~ -100 over 64 entries.
LOG_PROB_ATOL = 1e-3


def _images(n, shape=(4, 4, 1), seed=0, dtype="float64"):
    return tf.constant(np.random.default_rng(seed).standard_normal((n, *shape)), dtype)


def _randomized_flow(normalization, shape=(4, 4, 1), **options):
    # Two couplings of each kind: both parities of each mask, at a fraction of the paper's ten.
    flow = real_nvp_multiscale(shape, num_scales=2, normalization=normalization, dtype="float64",
                               num_checkerboard_couplings=2, num_channel_couplings=2, num_final_couplings=2,
                               **SMALL, **options)
    randomize(flow, seed=1, scale=0.3)  # a new flow is the identity, which proves little
    for part in _parts(flow.bijector, BatchNormalization):  # running statistics away from (0, 1) too
        part.moving_mean.assign(np.full(part.moving_mean.shape, 0.2))
        part.moving_variance.assign(np.full(part.moving_variance.shape, 1.7))
    return flow


def _parts(bijector, kind):
    from tfp_realnvp.tracking import parts

    return [part for part in parts(bijector) if isinstance(part, kind)]


@pytest.mark.parametrize("normalization", ["none", "batch", "actnorm"])
def test_log_det_matches_autodiff_through_every_scale(normalization):
    flow = _randomized_flow(normalization)
    x = _images(3)
    y = assert_round_trip(flow.bijector, x)
    # Not the identity (measured: entries move by 4.7 or more); float64 round-off is ~1e-15, so 1e-2 is a real change.
    assert y.shape == x.shape and np.max(np.abs(y - x)) > 1e-2
    assert_log_det_matches_autodiff(flow.bijector, x, event_ndims=3)
    # log p = log N(f^{-1}(x)) + log|det|, as TransformedDistribution computes it.
    z = flow.bijector.inverse(tf.identity(x))
    expected = flow.distribution.log_prob(z) + flow.bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=3)
    # The same float64 terms, summed perhaps in another order: ~1e-15 relative; 1e-12 leaves margin.
    np.testing.assert_allclose(flow.log_prob(x), expected, rtol=1e-12)


def test_the_papers_layout_scale_by_scale():
    flow = real_nvp_multiscale((8, 8, 1), num_scales=3, normalization="actnorm", **SMALL)
    chain = flow.bijector
    names = [b.name for b in chain.bijectors]
    assert names[:6] == ["scale_0_checkerboard_0", "scale_0_checkerboard_0_act_norm", "scale_0_checkerboard_1",
                         "scale_0_checkerboard_1_act_norm", "scale_0_checkerboard_2", "scale_0_checkerboard_2_act_norm"]
    assert names[6] == "scale_0_squeeze" and names[7:13:2] == [f"scale_0_channel_{k}" for k in range(3)]
    assert names[13:] == ["scale_0_factor_out", "scale_0_unsqueeze"]
    couplings = _parts(chain, AffineCoupling)
    # 3 + 3 per scale but the last, 4 there; masks alternate and shrink: [8,8,1] -> [4,4,2] -> [2,2,4].
    assert [c.event_shape for c in couplings] == [(8, 8, 1)] * 3 + [(4, 4, 4)] * 3 + [(4, 4, 2)] * 3 + \
        [(2, 2, 8)] * 3 + [(2, 2, 4)] * 4
    assert [bool(c.mask.flat[0]) for c in couplings[:3]] == [True, False, True]  # checkerboard parities 0, 1, 0
    assert couplings[3].mask[0, 0].tolist() == [True, True, False, False]  # channel-wise: the first half kept
    factor_outs = _parts(chain, FactorOut)
    assert [f.num_kept for f in factor_outs] == [2, 4]
    assert len(_parts(chain, ActNorm)) == len(couplings) and len(_parts(chain, Squeeze)) == 4
    assert tuple(flow.event_shape) == (8, 8, 1) and tuple(flow.distribution.event_shape) == (8, 8, 1)


def test_the_factored_half_leaves_at_its_scale():
    flow = _randomized_flow("none", shape=(4, 4, 1))
    x = _images(2)
    z = flow.bijector.inverse(x)
    # Scale 0 up to its factor-out, by hand: the squeezed channels 2..3 are latent already.
    steps = flow.bijector.bijectors
    h = x
    for step in steps[: names_index(steps, "scale_0_factor_out")]:
        h = step.inverse(h)
    np.testing.assert_array_equal(Squeeze().forward(z)[..., 2:], h[..., 2:])


def names_index(steps, name):
    return [s.name for s in steps].index(name)


@pytest.mark.parametrize("event_shape, options, pattern", [
    ((64,), {}, r"a flow over images: event_shape must be \[height, width, channels\]; got \(64,\)"),
    ((8, 8, 1), {"num_scales": 4}, r"does not fit 4 scales: .* multiples of 2\*\*\(num_scales - 1\) = 8 .*"
                                   r"at most 3 scales for 8x8"),
    ((6, 6, 1), {"num_scales": 3}, r"event shape \[6, 6, 1\] does not fit 3 scales"),
    ((8, 8, 1), {"normalization": "layer"}, r"normalization must be one of \('batch', 'actnorm', 'none'\)"),
    ((8, 8, 1), {"num_final_couplings": 0}, "num_final_couplings must be an integer >= 1; got 0"),
    ((8, 8, 1), {"context_size": -2}, "context_size must be an integer >= 0; got -2"),
])
def test_bad_shapes_and_options_are_named(event_shape, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        real_nvp_multiscale(event_shape, **options)


def test_it_is_a_builtin_flow():
    assert "real_nvp_multiscale" in BUILTIN_FLOWS
    model = FlowModel(event_shape=(8, 8, 1), flow="real_nvp_multiscale", **SMALL)
    assert model.get_config()["flow"] == "real_nvp_multiscale" and model.get_config()["num_filters"] == 4
    with pytest.raises(ValueError, match="flow over images"):
        FlowModel(64, flow="real_nvp_multiscale")


def test_a_conditional_image_flow_routes_the_context_through_every_scale(tmp_path):
    # The context reaches the couplings inside FactorOut's inner chain too, and batch norm its flag.
    model = FlowModel(event_shape=(4, 4, 1), flow="real_nvp_multiscale", context_size=2, normalization="batch",
                      num_checkerboard_couplings=1, num_channel_couplings=1, num_final_couplings=1,
                      standardize=False, **SMALL)
    couplings = _parts(model.distribution.bijector, AffineCoupling)
    assert len(couplings) == 3 and all(c.condition_keys == ("context",) for c in couplings)
    randomize(model.distribution, seed=1, scale=0.3)
    x = _images(3, dtype="float32").numpy()
    c = np.array([[1, 0], [0, 1], [1, 0]], "float32")
    a, b = model.log_prob(x, context=c), model.log_prob(x, context=c[:, ::-1].copy())
    assert a.shape == (3,) and np.min(np.abs(a - b)) > 1e-3  # every row: another context, another density
    assert model.sample(2, seed=0, context=c[:1]).shape == (2, 4, 4, 1)
    model.save(tmp_path / "conditional.keras")
    loaded = keras.models.load_model(tmp_path / "conditional.keras")
    np.testing.assert_array_equal(loaded.log_prob(x, context=c), a)
    with pytest.raises(ValueError, match=r"this model is conditional \(context_size=2\)"):
        model.log_prob(x)


# -- the image model on digits ------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_fit(tmp_path_factory):
    # The command line's image recipe, shortened: 700 images, 3 epochs at a higher rate, no XLA (whose
    # compilation would take longer), and fewer, smaller couplings (tracing the graph dominates).
    config = TrainingConfig.for_dataset(
        "digits", flow="real_nvp_multiscale", num_train=700, epochs=3, batch_size=64, learning_rate=3e-3,
        jit_compile=False, flow_options=dict(num_filters=16, num_blocks=1, num_checkerboard_couplings=1,
                                             num_channel_couplings=1, num_final_couplings=2))
    return fit_flow(config, verbose=0), tmp_path_factory.mktemp("multiscale")


@pytest.mark.slow
def test_a_short_fit_on_digits_clears_a_loose_bar(digits_fit):
    result, _ = digits_fit
    assert result.model.event_shape == (8, 8, 1) and result.config.event_shape == (8, 8, 1)
    # A fresh flow scores 5.8 bits/dim on the test images; three epochs reach ~2.8, the shipped vector model 2.19.
    assert result.metrics["test"]["bits_per_dim"] < 3.5, result.metrics
    assert result.history["loss"][-1] < result.history["loss"][0] - 20.0, result.history


@pytest.mark.slow
def test_the_image_model_saves_exports_and_serves_through_the_cpp_loader(digits_fit):
    result, tmp_path = digits_fit
    model = result.model
    x = (load_dataset("digits").test[:5].reshape(5, 8, 8, 1) + 0.5).astype("float32")
    model.save(tmp_path / "digits.keras")
    loaded = keras.models.load_model(tmp_path / "digits.keras")
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))
    np.testing.assert_array_equal(loaded.sample(3, seed=4, temperature=0.7), model.sample(3, seed=4, temperature=0.7))

    export = export_saved_model(model, tmp_path / "exports")
    specs = serving_check.signature_specs(export)
    batch = (-1, 8, 8, 1)
    assert specs["serving_default"]["inputs"]["x"]["shape"] == specs["inverse"]["outputs"]["z"]["shape"] == batch
    assert specs["sample"]["outputs"]["samples"]["shape"] == specs["forward"]["outputs"]["x"]["shape"] == batch
    assert json.loads((export / CONFIG_ASSET).read_text())["config"]["event_shape"] == [8, 8, 1]
    served = serving_check.run_signature_c(export, "serving_default", {"x": x})["log_prob"]
    np.testing.assert_allclose(served, model.log_prob(x), atol=LOG_PROB_ATOL)
    # (The inverse signature's shapes are checked above; its values, for an image flow, in test_registry.py.)
    samples = serving_check.run_signature_c(
        export, "sample", {"num_samples": np.int32(3), "seed": np.int64(4), "temperature": np.float32(0.7)})["samples"]
    # Samples of order 1..17 through ~20 float32 layers: a few ulps, relative.
    np.testing.assert_allclose(samples, model.sample(3, seed=4, temperature=0.7), rtol=1e-4, atol=1e-4)
