"""Flows by name: the registry, and a user's flow over [4, 4, 1] images through the whole product."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import AffineCoupling, FlowModel, MLPConditioner, checkerboard_mask, serving_check
from tfp_realnvp.choices import BUILTIN_FLOWS
from tfp_realnvp.export import CONFIG_ASSET, export_saved_model
from tfp_realnvp.flows import flow_builder, register_flow, registered_flows

tfb = tfp.bijectors
tfd = tfp.distributions

EVENT_SHAPE = (4, 4, 1)
# The same float32 graph run by the C++ session: kernels may round by an ulp or two, on
# log p(x) ~ -20 (ulp ~2e-6) over 16 entries; samples of order 1 (ulp ~1e-7).
LOG_PROB_ATOL = 1e-4
SAMPLE_TOL = dict(rtol=1e-5, atol=1e-5)


def checkerboard_flow(event_shape, *, seed, dtype, num_couplings=4, hidden_units=(16,)):
    """Checkerboard-masked affine couplings over an image on an Independent normal base."""
    couplings = [
        AffineCoupling(
            MLPConditioner(hidden_units, event_ndims=3, dtype=dtype, seed=None if seed is None else seed + k),
            mask=checkerboard_mask(event_shape, parity=k % 2),
            name=f"checkerboard_coupling_{k}",
        )
        for k in range(num_couplings)
    ]
    base = tfd.Independent(tfd.Normal(tf.zeros(event_shape, dtype), tf.ones([], dtype)), reinterpreted_batch_ndims=3)
    return tfd.TransformedDistribution(base, tfb.Chain(couplings[::-1]))


register_flow("test_checkerboard", checkerboard_flow, replace=True)


def _images(n: int, seed: int) -> np.ndarray:
    """Smooth random images: a shared pattern plus noise, so there is something to learn."""
    rng = np.random.default_rng(seed)
    pattern = np.linspace(-1.0, 1.0, 16).reshape(EVENT_SHAPE)
    return (pattern * rng.normal(1.0, 0.3, size=(n, 1, 1, 1)) + 0.2 * rng.standard_normal((n, *EVENT_SHAPE))
            ).astype("float32")


# -- the registry -------------------------------------------------------------------------


def test_builtin_flows_are_registered_first():
    assert registered_flows()[: len(BUILTIN_FLOWS)] == BUILTIN_FLOWS
    assert "test_checkerboard" in registered_flows()
    assert flow_builder("real_nvp").name == "real_nvp"


def test_bad_registrations_and_lookups_are_named():
    with pytest.raises(ValueError, match="a flow named 'real_nvp' is already registered; pass replace=True"):
        register_flow("real_nvp", checkerboard_flow)
    with pytest.raises(ValueError, match="flow name must be letters, digits"):
        register_flow("2 words", checkerboard_flow)
    with pytest.raises(TypeError, match="builder must be callable"):
        register_flow("not_callable", 3)
    with pytest.raises(ValueError, match=r"no flow named 'nowhere' is registered; registered flows: real_nvp, "):
        flow_builder("nowhere")
    with pytest.raises(ValueError, match="no flow named 'nowhere' is registered"):
        FlowModel(event_shape=EVENT_SHAPE, flow="nowhere")


def test_a_builder_that_returns_the_wrong_thing_is_refused():
    register_flow("test_wrong_shape", lambda event_shape, *, seed, dtype: checkerboard_flow((2, 2, 1), seed=seed,
                                                                                          dtype=dtype), replace=True)
    with pytest.raises(ValueError, match=r"built a distribution over events of shape \(2, 2, 1\); expected "
                                         r"\(4, 4, 1\)"):
        FlowModel(event_shape=EVENT_SHAPE, flow="test_wrong_shape")
    register_flow("test_not_a_flow", lambda event_shape, *, seed, dtype: tfd.Normal(0.0, 1.0), replace=True)
    with pytest.raises(TypeError, match="built a Normal; expected a tfd.TransformedDistribution"):
        FlowModel(event_shape=EVENT_SHAPE, flow="test_not_a_flow")
    with pytest.raises(TypeError, match="options of flow 'test_checkerboard' must be JSON values"):
        FlowModel(event_shape=EVENT_SHAPE, flow="test_checkerboard", hidden_units=np.array([4]))


def test_event_shape_and_event_size_are_exclusive():
    with pytest.raises(ValueError, match="give exactly one of event_size"):
        FlowModel(2, event_shape=(2,))
    with pytest.raises(ValueError, match=r"event_shape must be positive integers such as \[2\] or \[8, 8, 1\]"):
        FlowModel(event_shape=(4, 0))
    # The old spelling and the new build the same vector model.
    a = FlowModel(3, num_couplings=2, hidden_units=(4,), name="m")
    b = FlowModel(event_shape=[3], num_couplings=2, hidden_units=(4,), name="m")
    assert a.get_config() == b.get_config() and a.event_shape == (3,) and a.event_size == 3


# -- a user's flow end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = FlowModel(event_shape=EVENT_SHAPE, flow="test_checkerboard", num_couplings=4, hidden_units=[16], seed=1)
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.compile(keras.optimizers.Adam(5e-3), jit_compile=False)
    history = model.fit(_images(512, seed=0), epochs=4, batch_size=64, verbose=0)
    return model, before, history.history["loss"], tmp_path_factory.mktemp("user_flow")


@pytest.mark.slow
def test_a_user_flow_trains_every_weight(trained):
    model, before, losses, _ = trained
    # 4 couplings: 2 dense layers (kernel, bias) and the tanh scale each.
    assert len(model.trainable_variables) == 4 * 5
    changed = [not np.array_equal(v.numpy(), b) for v, b in zip(model.trainable_variables, before)]
    assert all(changed), [v.name for v, c in zip(model.trainable_variables, changed) if not c]
    assert losses[-1] < losses[0] - 1.0, losses  # 16 dimensions from a standardised start: nats to gain
    assert model.get_config()["flow"] == "test_checkerboard" and model.get_config()["event_shape"] == [4, 4, 1]


@pytest.mark.slow
def test_a_user_flow_saves_and_reloads_exactly(trained):
    model, _, _, tmp_path = trained
    path = tmp_path / "user.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _images(8, seed=5)
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))
    np.testing.assert_array_equal(loaded.sample(6, seed=3), model.sample(6, seed=3))
    assert loaded.sample(6, seed=3).shape == (6, *EVENT_SHAPE)


@pytest.mark.slow
def test_a_user_flow_exports_and_serves_through_the_cpp_loader(trained):
    model, _, _, tmp_path = trained
    export = export_saved_model(model, tmp_path / "exports")
    specs = serving_check.signature_specs(export)
    batch = (-1, *EVENT_SHAPE)
    assert specs["serving_default"]["inputs"]["x"]["shape"] == batch
    assert specs["sample"]["outputs"]["samples"]["shape"] == batch
    assert specs["forward"]["inputs"]["z"]["shape"] == specs["forward"]["outputs"]["x"]["shape"] == batch
    assert specs["inverse"]["outputs"]["z"]["shape"] == batch
    assert specs["inverse"]["outputs"]["log_det_jacobian"]["shape"] == (-1,)
    assert json.loads((export / CONFIG_ASSET).read_text())["config"]["flow"] == "test_checkerboard"

    x = _images(5, seed=6)
    served = serving_check.run_signature_c(export, "serving_default", {"x": x})["log_prob"]
    np.testing.assert_allclose(served, model.log_prob(x), rtol=0, atol=LOG_PROB_ATOL)
    inverse = serving_check.run_signature_c(export, "inverse", {"x": x})
    base = model.distribution.distribution
    np.testing.assert_allclose(base.log_prob(inverse["z"]) + inverse["log_det_jacobian"], served, atol=LOG_PROB_ATOL)
    request = {"num_samples": np.int32(4), "seed": np.int64(11), "temperature": np.float32(0.8)}
    samples = serving_check.run_signature_c(export, "sample", request)["samples"]
    assert samples.shape == (4, *EVENT_SHAPE)
    np.testing.assert_allclose(samples, model.sample(4, seed=11, temperature=0.8), **SAMPLE_TOL)
    with pytest.raises(RuntimeError, match=r"is not compatible with expected shape \[\?,4,4,1\]"):
        serving_check.run_signature_c(export, "serving_default", {"x": np.zeros((2, 4, 4, 2), np.float32)})
