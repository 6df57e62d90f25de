"""The Gaussian start: a fresh whitened flow is the training rows' maximum-likelihood Gaussian
(in memory, through a .keras round trip and the SavedModel), early stopping can keep it, and
tables without such a Gaussian are refused with the columns named."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

from tfp_realnvp import FlowModel, TrainingConfig, export_saved_model, fit_flow
from tfp_realnvp.bijectors.whitening import Whitening, fit_gaussian, gaussian_nll
from tfp_realnvp.data import DataError

# The Gaussian is evaluated the same way in float64 on both sides, up to the order of the sums.
TIGHT = 1e-9


def _rows(n: int = 300, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d) * 10


def _gaussian_log_prob(fit: np.ndarray, x: np.ndarray) -> np.ndarray:
    return multivariate_normal(fit.mean(0), np.cov(fit.T, bias=True)).logpdf(x)  # bias=True: maximum likelihood


@pytest.fixture(scope="module")
def fresh():
    rows = _rows()
    model = FlowModel(3, whiten=True, flow_dtype="float64", num_couplings=2, hidden_units=(8,), seed=3)
    model.compile(jit_compile=False)  # plain eager calls: no XLA compilation in a test of values
    model.adapt(rows[:200])
    return model, rows


def test_fresh_flow_is_the_fitted_gaussian(fresh):
    model, rows = fresh
    expected = _gaussian_log_prob(rows[:200], rows[200:])
    np.testing.assert_allclose(model.log_prob(rows[200:]).numpy(), expected, rtol=0, atol=TIGHT)
    assert gaussian_nll(rows[:200], rows[200:]) == pytest.approx(-expected.mean(), abs=TIGHT)


def test_fresh_flow_is_the_gaussian_after_a_keras_round_trip_and_in_the_export(fresh, tmp_path):
    import keras

    model, rows = fresh
    expected = _gaussian_log_prob(rows[:200], rows[200:])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.preprocessing.whiten
    np.testing.assert_allclose(loaded.log_prob(rows[200:]).numpy(), expected, rtol=0, atol=TIGHT)
    exported = export_saved_model(model, tmp_path / "export")
    served = tf.saved_model.load(str(exported)).signatures["serving_default"](x=tf.constant(rows[200:]))
    np.testing.assert_allclose(served["log_prob"].numpy(), expected, rtol=0, atol=TIGHT)


def test_whitening_log_det_is_the_jacobians():
    rows = _rows(50, 4, seed=1)
    whitening = Whitening(4, dtype="float64")
    whitening.adapt(rows)
    x = tf.identity(tf.constant(rows[:5]))  # identity: TFP caches by tensor
    with tf.GradientTape() as tape:
        tape.watch(x)
        u = whitening.bijector().inverse(x)
    jacobian = tape.batch_jacobian(u, x)
    np.testing.assert_allclose(whitening.bijector().inverse_log_det_jacobian(x, event_ndims=1).numpy(),
                               np.linalg.slogdet(jacobian.numpy())[1], rtol=0, atol=TIGHT)
    white = whitening.bijector().inverse(tf.constant(rows)).numpy()
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(4), atol=1e-12)  # float64 rounding


def test_fit_flow_keeps_the_gaussian_when_no_epoch_beats_it(tmp_path):
    # Gaussian rows, and Adam at a rate of 5: its first step throws the couplings' zero last layers
    # far from the identity (validation NLL in the thousands), and no epoch comes back to the start.
    path = tmp_path / "gauss.npy"
    np.save(path, _rows(300, 3, seed=2).astype(np.float32))
    config = TrainingConfig.for_dataset(f"npy:{path}", epochs=1, learning_rate=5.0, flow_dtype="float64",
                                        flow_options={"num_couplings": 2, "hidden_units": [8]})
    result = fit_flow(config, verbose=0)
    assert result.config.whiten and result.best_epoch == 0
    # The validation NLL printed beside the flow's is the Gaussian's, and the flow is that Gaussian.
    # Keras's metrics are float32: ~1e-6 of 5.5 nats.
    assert result.metrics["validation"]["nll"] == pytest.approx(result.metrics["gaussian"]["nll"], abs=1e-5)


# -- bad tables ---------------------------------------------------------------------------------


def test_constant_column_is_refused():
    rows = _rows(100, 3)
    rows[:, 1] = 5.0
    with pytest.raises(ValueError, match=r"column\(s\) 2 \(every value 5\) are constant in the 100 training rows"):
        fit_gaussian(rows)


def test_duplicated_column_is_refused():
    rows = _rows(100, 3)
    rows = np.column_stack([rows, 2 * rows[:, 0] + 1])
    with pytest.raises(ValueError, match=r"columns 1 and 4 are copies of each other in the training rows"):
        fit_gaussian(rows)


def test_linearly_dependent_columns_are_refused():
    rows = _rows(100, 3)
    rows = np.column_stack([rows, rows[:, 0] + rows[:, 1]])
    with pytest.raises(ValueError, match=r"the columns are linearly dependent in the training rows"):
        fit_gaussian(rows)


def test_more_columns_than_rows_is_refused_by_whitening():
    with pytest.raises(ValueError, match=r"needs more training rows than columns .* got 10 rows and 12 columns"):
        fit_gaussian(np.random.default_rng(0).normal(size=(10, 12)))


def test_bad_tables_through_fit_flow(tmp_path):
    rows = _rows(60, 3).astype(np.float32)
    constant = rows.copy()
    constant[:, 2] = 1.5
    np.save(tmp_path / "constant.npy", constant)
    with pytest.raises(DataError, match=r"do not fit the flow: column\(s\) 3 \(every value 1.5\) are constant"):
        fit_flow(TrainingConfig.for_dataset(f"npy:{tmp_path / 'constant.npy'}", epochs=1), verbose=0)
    np.save(tmp_path / "single.npy", rows[:, :1])
    with pytest.raises(Exception, match=r"cannot build the flow: real_nvp is a flow over vectors: event_shape must be an integer >= 2"):
        fit_flow(TrainingConfig.for_dataset(f"npy:{tmp_path / 'single.npy'}", epochs=1), verbose=0)


def test_more_columns_than_rows_is_standardised_by_the_recipe():
    # 24 rows of 30 columns: the recipe leaves whitening off (fewer than 2 x 30 rows to fit); no NaN.
    from tfp_realnvp.table_recipe import table_choices

    assert table_choices(24, 30)["whiten"] is False
    rows = np.random.default_rng(0).normal(size=(24, 30))
    model = FlowModel(30, num_couplings=2, hidden_units=(8,))
    model.compile(jit_compile=False)
    model.adapt(rows[:19])
    assert np.all(np.isfinite(model.log_prob(rows[19:]).numpy()))
