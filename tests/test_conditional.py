"""Conditional densities p(x | context): TFP's routing, FlowModel, export, training and the command line."""

from __future__ import annotations

import json
import math
import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import FlowModel, cli, export_saved_model, real_nvp, route, serving_check
from tfp_realnvp.data import load_dataset
from tfp_realnvp.examples import Examples
from tfp_realnvp.flows import register_flow
from tfp_realnvp.training import ConfigError, TrainingConfig, fit_flow

tfd = tfp.distributions

# The same float32 graph through the C++ session: an ulp or two of log p(x) ~ -5 (~5e-7 each).
ATOL32 = 1e-5
# The same model's density two ways in one process (the compiled eager call, TFP's own through
# route): XLA fuses the float32 arithmetic differently, a few ulps of values of order 1-10.
RTOL32 = 1e-5


def _randomized(model: FlowModel, seed: int = 0) -> FlowModel:
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(0.3 * rng.standard_normal(v.shape).astype(np.dtype(getattr(v.dtype, "name", v.dtype))))
    return model


@pytest.fixture(scope="module")
def model() -> FlowModel:
    return _randomized(FlowModel(2, num_couplings=2, hidden_units=(8,), context_size=3, standardize=False))


X = np.array([[0.5, 0.25], [1.0, -0.5], [-0.9, 0.4], [0.0, 0.1]], np.float32)
C = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]], np.float32)


# -- TFP's side ----------------------------------------------------------------------------


def test_the_context_reaches_every_coupling_through_bijector_kwargs():
    dist = real_nvp(2, num_couplings=3, hidden_units=(8,), context_size=3)
    _randomized(dist)
    kwargs = route(dist.bijector, context=C)
    assert sorted(kwargs) == ["affine_coupling_0", "affine_coupling_1", "affine_coupling_2"]
    a = dist.log_prob(X, bijector_kwargs=kwargs)
    b = dist.log_prob(X, bijector_kwargs=route(dist.bijector, context=C[::-1].copy()))
    assert a.shape == (4,) and np.min(np.abs(a - b)) > 1e-3  # every row: another context, another density
    samples = dist.sample(4, seed=(1, 2), bijector_kwargs=kwargs)
    assert samples.shape == (4, 2) and np.all(np.isfinite(dist.log_prob(samples, bijector_kwargs=kwargs)))


# -- FlowModel ------------------------------------------------------------------------------


def test_log_prob_and_sample_take_the_context(model):
    expected = model.distribution.log_prob(X, bijector_kwargs=route(model.distribution.bijector, context=C))
    np.testing.assert_allclose(model.log_prob(X, context=C), expected, rtol=RTOL32)
    # One row is shared by every example: the same as that row repeated (the same program: exact).
    np.testing.assert_array_equal(model.log_prob(X, context=C[:1]), model.log_prob(X, context=np.repeat(C[:1], 4, 0)))
    a, b = model.sample(4, seed=1, context=C), model.sample(4, seed=1, context=C)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, model.sample(4, seed=1, context=C[::-1].copy()))
    np.testing.assert_array_equal(model.sample(4, seed=1, context=C[1:2]),
                                  model.sample(4, seed=1, context=np.repeat(C[1:2], 4, 0)))
    np.testing.assert_array_equal(model({"x": X, "context": C}), model.log_prob(X, context=C))


@pytest.mark.parametrize("call, pattern", [
    (lambda m: m.log_prob(X), r"this model is conditional \(context_size=3\): pass context= of shape \[n, 3\]"),
    (lambda m: m.log_prob(X, context=C[:, :2]), r"context of shape \(4, 2\) does not fit the model's context_size 3"),
    (lambda m: m.log_prob(X, context=C[:2]), r"context has 2 rows but the batch has 4; expected 4 rows, or 1 row"),
    (lambda m: m.sample(3, seed=0, context=C), r"context has 4 rows but the batch has 3"),
    (lambda m: m.sample(3, seed=0), r"this model is conditional"),
    (lambda m: m({"x": X, "contexts": C}), r"inputs are \{'x': ..., 'context': ...\}; got keys \['contexts', 'x'\]"),
])
def test_a_context_that_does_not_fit_is_named(model, call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(model)


def test_unconditional_models_and_flows_refuse_a_context():
    plain = FlowModel(2, num_couplings=1, hidden_units=(4,))
    with pytest.raises(ValueError, match=r"this model takes no context \(context_size=0\); got a context of shape "
                                         r"\(4, 3\)"):
        plain.log_prob(X, context=C)
    register_flow("test_no_context", lambda event_shape, *, seed, dtype, context_size=0: real_nvp(
        event_shape, num_couplings=1, hidden_units=(4,), seed=seed, dtype=dtype), replace=True)
    with pytest.raises(ValueError, match="flow 'test_no_context' takes no context: none of its bijectors lists"):
        FlowModel(2, flow="test_no_context", context_size=2)


@pytest.mark.slow
def test_fit_on_dicts_of_arrays_and_datasets_learns_the_condition(tmp_path):
    moons = load_dataset("two_moons", num_train=2000, num_test=500)
    one_hot = np.eye(2, dtype=np.float32)
    train = {"x": moons.train, "context": one_hot[moons.train_labels]}
    model = FlowModel(2, num_couplings=4, hidden_units=(32, 32), context_size=2, standardize=False)
    model.compile(keras.optimizers.Adam(3e-3), jit_compile=False)
    history = model.fit(train, epochs=6, batch_size=128, validation_split=0.1, verbose=0)
    assert "val_nll" in history.history and history.history["loss"][-1] < history.history["loss"][0]
    batches = tf.data.Dataset.from_tensor_slices(train).batch(256)
    model.fit(batches, epochs=1, verbose=0)
    # The right moon explains its points better than the wrong one, for most test points.
    right = model.log_prob(moons.test, context=one_hot[moons.test_labels])
    wrong = model.log_prob(moons.test, context=one_hot[1 - moons.test_labels])
    assert np.mean(right > wrong) > 0.8
    model.save(tmp_path / "conditional.keras")
    loaded = keras.models.load_model(tmp_path / "conditional.keras")
    assert loaded.context_size == 2
    np.testing.assert_array_equal(loaded.log_prob(X, context=one_hot[:1]), model.log_prob(X, context=one_hot[:1]))
    np.testing.assert_array_equal(loaded.sample(5, seed=2, context=one_hot[1:]), model.sample(5, seed=2,
                                                                                              context=one_hot[1:]))


# -- export ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export(model, tmp_path_factory) -> pathlib.Path:
    return export_saved_model(model, tmp_path_factory.mktemp("conditional") / "moons")


def test_every_signature_takes_the_context(export):
    specs = serving_check.signature_specs(export)
    for key in ("serving_default", "log_prob", "sample", "forward", "inverse"):
        assert specs[key]["inputs"]["context"]["shape"] == (-1, 3), key


def test_the_cpp_loader_serves_the_conditional_density(export, model):
    served = serving_check.run_signature_c(export, "serving_default", {"x": X, "context": C})["log_prob"]
    np.testing.assert_allclose(served, model.log_prob(X, context=C), rtol=0, atol=ATOL32)
    shared = serving_check.run_signature_c(export, "log_prob", {"x": X, "context": C[:1]})["log_prob"]
    np.testing.assert_allclose(shared, model.log_prob(X, context=C[:1]), rtol=0, atol=ATOL32)
    request = {"num_samples": np.int32(4), "seed": np.int64(5), "temperature": np.float32(1.0), "context": C}
    samples = serving_check.run_signature_c(export, "sample", request)["samples"]
    # The C++ session's TF kernels against the compiled eager flow: a few ulps of values of order 1.
    np.testing.assert_allclose(samples, model.sample(4, seed=5, context=C), rtol=1e-5, atol=1e-5)
    inverse = serving_check.run_signature_c(export, "inverse", {"x": X, "context": C})
    forward = serving_check.run_signature_c(export, "forward", {"z": inverse["z"], "context": C})["x"]
    np.testing.assert_allclose(forward, X, atol=1e-5)  # float32 round trip through 2 couplings


@pytest.mark.parametrize("inputs, pattern", [
    ({"x": X, "context": C[:2]}, r"assertion failed: \[context has\] \[2\] \[rows but the batch is\] \[4\]"),
    ({"x": X, "context": C[:, :2]}, r"Shape of tensor .*context.* \[4,2\] is not compatible with expected shape "
                                    r"\[\?,3\]"),
    ({"x": X}, r"input 'context' of signature 'serving_default' is not fed"),
])
def test_the_signatures_refuse_a_context_that_does_not_fit(export, inputs, pattern):
    with pytest.raises(RuntimeError, match=pattern):
        serving_check.run_signature_c(export, "serving_default", inputs)


# -- training -------------------------------------------------------------------------------

QUICK = dict(num_train=2000, num_test=300, epochs=6, batch_size=128, jit_compile=False,
             flow_options={"num_couplings": 4, "hidden_units": [32, 32]})


@pytest.mark.slow
def test_fit_flow_conditions_on_the_label():
    plain = fit_flow(TrainingConfig.for_dataset("two_moons", **QUICK), verbose=0)
    given = fit_flow(TrainingConfig.for_dataset("two_moons", **QUICK, condition_on_label=True), verbose=0)
    assert given.model.context_size == 2 and plain.model.context_size == 0
    # The condition is worth up to ln 2 nats on two moons; a short fit gets a good part of it.
    assert plain.metrics["test"]["nll"] - given.metrics["test"]["nll"] > 0.3 * math.log(2)


def test_context_columns_by_name_and_number(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(size=200), rng.integers(0, 2, 200), rng.normal(size=200)])
    np.savetxt(tmp_path / "cond.csv", rows, delimiter=",", header="a,flag,b", comments="", fmt="%.6f")
    spec = f"csv:{tmp_path / 'cond.csv'}"
    data = load_dataset(spec)
    assert data.columns == ("a", "flag", "b")
    by_name = TrainingConfig(dataset=spec, context_columns=["flag"])
    by_number = TrainingConfig(dataset=spec, context_columns=[2])
    (x1, c1), (x2, c2) = Examples(by_name, data).arrays("train"), Examples(by_number, data).arrays("train")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(x1, data.train[:, [0, 2]])
    np.testing.assert_array_equal(c1, data.train[:, [1]])
    for columns, pattern in [(["flagg"], r"context column 'flagg' is not a column of .*: its columns are a, flag, b"),
                             ([4], r"context column 4 is out of range: .* has 3 column\(s\), counted from 1"),
                             ([1, 2, 3], r"context_columns take all 3 columns"),
                             ([2, "flag"], r"name a column twice")]:
        with pytest.raises(ConfigError, match=pattern):
            fit_flow(TrainingConfig(dataset=spec, context_columns=columns, **QUICK), data=data, verbose=0)
    with pytest.raises(ConfigError, match="condition_on_label needs a dataset of classes"):
        fit_flow(TrainingConfig(dataset="checkerboard", condition_on_label=True, **QUICK), verbose=0)


# -- the command line ----------------------------------------------------------------------


def _main(argv, capfd):
    capfd.readouterr()
    status = cli.main(argv)
    out, err = capfd.readouterr()
    return status, out, [line for line in err.splitlines() if line and not line.startswith(("I0000", "E0000", "W0000"))]


@pytest.mark.slow
def test_the_command_line_trains_evaluates_and_samples_a_conditional_model(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train = ["train", "--condition-on-label", "--epochs", "2", "--num-train", "1000", "--num-test", "200",
             "--couplings", "2", "--hidden-units", "16", "--no-jit-compile", "--verbose", "0", "--no-export",
             "--output", "run"]
    status, out, err = _main(train, capfd)
    assert status == 0, err
    assert "Context   the one-hot class (2 classes): p(x | class)" in out
    assert (tmp_path / "run" / "classes.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    status, out, err = _main(["evaluate", "--model", "run/model.keras"], capfd)  # the context from settings.json
    assert status == 0, err
    (nll,) = re.findall(r"^test\s+200\s+(\d+\.\d{4})$", out, re.M)
    assert float(nll) == pytest.approx(metrics["test"]["nll"], abs=1e-4)  # the table's 4 decimals
    status, out, err = _main(["sample", "--model", "run/model.keras", "--label", "1", "-n", "20", "--output",
                              "moon1.npy"], capfd)
    assert status == 0, err
    assert "(seed 0, temperature 1, label 1)" in out and np.load(tmp_path / "moon1.npy").shape == (20, 2)
    np.savetxt(tmp_path / "contexts.csv", np.eye(2)[[0, 1, 1]], delimiter=",")
    status, out, err = _main(["sample", "--model", "run/model.keras", "--context-file", "contexts.csv", "--output",
                              "three.npy"], capfd)
    assert status == 0, err
    assert np.load(tmp_path / "three.npy").shape == (3, 2)
    (tmp_path / "moved").mkdir()  # the model without its run's settings.json
    (tmp_path / "moved" / "model.keras").write_bytes((tmp_path / "run" / "model.keras").read_bytes())
    FlowModel(2, num_couplings=1, hidden_units=(4,)).save(tmp_path / "plain.keras")
    for argv, pattern in [
        (["plot", "--model", "moved/model.keras", "--output", "figures"],
         r"is conditional: its samples need the contexts of data; expected --dataset with --condition-on-label"),
        (["sample", "--model", "plain.keras", "--label", "0", "--output", "a.npy"],
         r"the model plain\.keras takes no context; expected no --context, --context-file or --label"),
        (["sample", "--model", "run/model.keras", "--output", "a.npy"],
         r"is conditional \(context_size 2\); expected --context V,V,..., --context-file PATH or"),
        (["sample", "--model", "run/model.keras", "--context", "1,0,0", "--output", "a.npy"],
         r"the context has 3 value\(s\) per row but the model .* takes 2"),
        (["sample", "--model", "run/model.keras", "--label", "2", "--output", "a.npy"],
         r"--label 2 is not a class of the model .*: it takes 2 classes, 0..1"),
        (["sample", "--model", "run/model.keras", "--context-file", "contexts.csv", "-n", "5", "--output", "a.npy"],
         r"--context-file has 3 rows for 5 samples"),
        (["evaluate", "--model", "run/model.keras", "--dataset", "two_moons"],
         r"is conditional \(context_size 2\) and no context is given; expected --condition-on-label"),
        (["train", "--dataset", "checkerboard", "--condition-on-label", "--epochs", "1", "--no-export", "--output",
          "bad"], r"condition_on_label needs a dataset of classes \(two_moons, digits\); checkerboard has no class"),
    ]:
        status, _, err = _main(argv, capfd)
        assert status == 2 and len(err) == 1 and re.search(pattern, err[0]), (argv, err)
    assert not (tmp_path / "a.npy").exists() and not (tmp_path / "bad").exists()
    assert not (tmp_path / "figures").exists()
