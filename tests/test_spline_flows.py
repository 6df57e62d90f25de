"""Spline couplings and learned mixing through the product: fit, .keras, the C++ loader, the command line."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tfp_realnvp import FlowModel, LUMixing, SplineCoupling, coupling_layers, export_saved_model
from tfp_realnvp import cli
from tfp_realnvp.serving_check import run_signature_c
from tfp_realnvp.tracking import parts


@pytest.fixture(scope="module")
def trained():
    """A conditional spline flow with LU mixing, fitted for one short epoch."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype("float32")
    context = rng.normal(size=(256, 2)).astype("float32")
    model = FlowModel(3, num_couplings=2, hidden_units=(8,), transform="spline", num_bins=4, tail_bound=2.5,
                      permutation="lu", context_size=2)
    before = [w.numpy().copy() for w in model.trainable_weights]
    # No XLA for the eager calls either: a compile per batch shape would cost seconds here.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    history = model.fit({"x": x, "context": context}, epochs=1, batch_size=64, verbose=0)
    return model, before, history, x[:16], context[:16]


def test_the_flow_is_made_of_splines_and_lu_maps_and_fit_trains_them_all(trained):
    model, before, history, _, _ = trained
    couplings = list(coupling_layers(model.distribution))
    assert len(couplings) == 2 and all(isinstance(c, SplineCoupling) for c in couplings)
    assert [c.num_bins for c in couplings] == [4, 4] and couplings[0].tail_bound == 2.5
    assert len([p for p in parts(model.distribution) if isinstance(p, LUMixing)]) == 1
    assert np.isfinite(history.history["loss"]).all()
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed), [w.path for w, c in zip(model.trainable_weights, changed) if not c]


def test_keras_round_trip_gives_identical_log_prob_and_seeded_samples(trained, tmp_path):
    model, _, _, x, context = trained
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    loaded.compile(jit_compile=False)
    np.testing.assert_array_equal(loaded.log_prob(x, context=context), model.log_prob(x, context=context))
    np.testing.assert_array_equal(loaded.sample(5, seed=3, context=context[:5]),
                                  model.sample(5, seed=3, context=context[:5]))
    other = model.log_prob(x, context=context + 1.0)
    assert not np.allclose(other, model.log_prob(x, context=context))  # the context reaches the splines


def test_every_export_signature_runs_in_the_cpp_loader(trained, tmp_path):
    model, _, _, x, context = trained
    path = export_saved_model(model, tmp_path / "export")
    served = run_signature_c(path, "log_prob", {"x": x, "context": context})["log_prob"]
    # The same float32 graph in another runtime: equal up to kernel choices, ~1e-6.
    np.testing.assert_allclose(served, model.log_prob(x, context=context), rtol=1e-5, atol=1e-5)
    # serving_default is the log_prob function itself (export.py); inverse then forward round trip.
    (z,) = [v for v in run_signature_c(path, "inverse", {"x": x, "context": context}).values() if v.shape == x.shape]
    (x_back,) = [v for v in run_signature_c(path, "forward", {"z": z, "context": context}).values()
                 if v.shape == x.shape]
    np.testing.assert_allclose(x_back, x, atol=1e-4)  # float32 round trip through two splines and an LU map
    drawn = run_signature_c(path, "sample", {"num_samples": np.int32(4), "seed": np.int64(1),
                                             "temperature": np.float32(1.0), "context": context[:4]})
    assert all(np.isfinite(v).all() for v in drawn.values())


def test_the_image_flow_takes_splines_and_1x1_mixing_and_round_trips_through_keras(tmp_path):
    model = FlowModel(event_shape=[4, 4, 1], flow="real_nvp_multiscale", transform="spline", num_bins=3,
                      mixing="1x1", num_scales=2, num_filters=4, num_blocks=1, num_checkerboard_couplings=1,
                      num_channel_couplings=1, num_final_couplings=1, standardize=False, integer_levels=4)
    # A 1x1 convolution before each coupling of 2 channels or more: the channel coupling and the last scale's.
    assert len([p for p in parts(model.distribution) if isinstance(p, LUMixing)]) == 2
    assert all(isinstance(c, SplineCoupling) for c in coupling_layers(model.distribution))
    x = np.random.default_rng(1).uniform(0, 4, (6, 4, 4, 1)).astype("float32")
    for w in model.trainable_weights:
        w.assign(0.1 * np.random.default_rng(2).standard_normal(w.shape))
    model.compile(jit_compile=False)
    model.save(tmp_path / "img.keras")
    loaded = keras.models.load_model(tmp_path / "img.keras")
    loaded.compile(jit_compile=False)
    np.testing.assert_array_equal(loaded.log_prob(x), model.log_prob(x))


def test_the_command_line_trains_a_spline_flow_with_lu_mixing(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = cli.main(["train", "--epochs", "1", "--num-train", "300", "--num-test", "100", "--couplings", "2",
                       "--hidden-units", "8", "--transform", "spline", "--num-bins", "5", "--tail-bound", "4",
                       "--permutation", "lu", "--no-export", "--output", "run", "--verbose", "0"])
    assert status == 0, capfd.readouterr()
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert {k: settings["flow_options"][k] for k in ("transform", "num_bins", "tail_bound", "permutation")} == {
        "transform": "spline", "num_bins": 5, "tail_bound": 4.0, "permutation": "lu"}
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert all(isinstance(c, SplineCoupling) for c in coupling_layers(model.distribution))
