"""Training stays finite on hostile data, and float64 holds end to end (issue 15, item 2).

The bijectors' finiteness for inputs up to 1e4 and extreme parameters is a property in
test_properties.py; here whole trainings: heavy outliers and many duplicated points must not
drive the loss or a weight to NaN, and a float64 model stays float64 through fit, save, load
and export.
"""

from __future__ import annotations

import numpy as np
import pytest
import keras
import tensorflow as tf

from tfp_realnvp import FlowModel, export_saved_model, serving_check

MAGNITUDE = 1e4  # the largest magnitude issue 15 promises to handle


def _moons_like(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, 2)) * [1.0, 0.3] + [0.5, 0.0]).astype(np.float32)


def _with_outliers(seed: int) -> np.ndarray:
    """2% of the rows at +-1e4 (the first feature; half of them in both), among 98% of order 1."""
    x = _moons_like(500, seed)
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(len(x), size=10, replace=False)
    x[rows, 0] = rng.choice([-MAGNITUDE, MAGNITUDE], size=10)
    x[rows[:5], 1] = rng.choice([-MAGNITUDE, MAGNITUDE], size=5)
    return x


def _with_duplicates(seed: int) -> np.ndarray:
    """90% of the rows one point, and the second feature constant: a density that would collapse."""
    x = _moons_like(500, seed)
    x[: 450] = [0.25, 1.0]
    x[:, 1] = 1.0
    return x


def _train(x: np.ndarray, *, standardize: bool) -> tuple[FlowModel, list[float]]:
    model = FlowModel(2, num_couplings=2, hidden_units=(16,), seed=0, standardize=standardize)
    # A learning rate 10x Adam's default: the weights move far in few steps, as they would in a long run.
    # Without XLA: the same arithmetic, and no compile time per test.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    history = model.fit(x, epochs=4, batch_size=50, verbose=0)
    return model, history.history["loss"]


@pytest.mark.parametrize("standardize", [True, False], ids=["standardized", "raw"])
@pytest.mark.parametrize("data", [_with_outliers, _with_duplicates], ids=["outliers", "duplicates"])
def test_training_on_hostile_data_never_reaches_nan(data, standardize):
    x = data(0)
    model, losses = _train(x, standardize=standardize)
    assert np.all(np.isfinite(losses)), losses
    assert all(np.all(np.isfinite(v.numpy())) for v in model.weights), "a weight is NaN or infinite"
    # Every training row, outliers and duplicates included, has a finite density afterwards.
    assert np.all(np.isfinite(model.log_prob(x).numpy()))
    assert np.all(np.isfinite(model.sample(64, seed=1).numpy()))


@pytest.mark.slow
def test_float64_end_to_end_fit_save_load_export(tmp_path):
    x = _moons_like(400, 3).astype(np.float64)
    model = FlowModel(2, num_couplings=2, hidden_units=(8,), seed=0, flow_dtype="float64")
    model.compile()
    history = model.fit(x, epochs=2, batch_size=100, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert {v.dtype for v in model.trainable_variables} == {"float64"}
    expected = model.log_prob(x[:8]).numpy()
    assert expected.dtype == np.float64

    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.flow_dtype == "float64"
    # The same float64 weights and kernels: equal to float64 rounding.
    np.testing.assert_allclose(loaded.log_prob(x[:8]).numpy(), expected, rtol=1e-12, atol=1e-12)

    path = export_saved_model(loaded, tmp_path / "exports")
    specs = serving_check.signature_specs(path)
    assert {specs[name]["inputs"]["x"]["dtype"] for name in ("log_prob", "inverse")} == {"float64"}
    served = tf.saved_model.load(str(path)).signatures["log_prob"](x=tf.constant(x[:8]))["log_prob"].numpy()
    assert served.dtype == np.float64
    # The exported graph runs the same float64 arithmetic, perhaps fused otherwise: eps64 * a few.
    np.testing.assert_allclose(served, expected, rtol=1e-10, atol=1e-10)
