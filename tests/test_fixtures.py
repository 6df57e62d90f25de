"""Saved models of every release still load and answer as they did (tests/fixtures/<release>/).

Each release writes tiny models with `tests/fixtures/make_fixtures.py` into a folder of its own
version and keeps the earlier releases' folders: this test loads every release's `.keras` files
(`keras.models.load_model`) and SavedModels (`tf.saved_model.load`), and checks `log_prob` of the
stored inputs and the samples of the stored seed against the values stored beside them.
"""

from __future__ import annotations

import json
import pathlib
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_realnvp  # noqa: F401  (registers the Keras classes that load_model needs)

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
RELEASES = sorted(p for p in FIXTURES.iterdir() if (p / "values.json").is_file())
CASES = [(release, name) for release in RELEASES
         for name in json.loads((release / "values.json").read_text())["models"]]
IDS = [f"{release.name}-{name}" for release, name in CASES]
# Stored by the Keras model on the machine that wrote them. float32 through a few couplings,
# read back on other CPU kernels, a later TF or the SavedModel's graph instead of XLA: ~1e-5;
# a saved model that changed (weights, a bijector's equations, the preprocessing) moves them by
# far more.
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


def _values(release: pathlib.Path, name: str) -> dict:
    return json.loads((release / "values.json").read_text())["models"][name]


def _array(values: dict, key: str) -> np.ndarray | None:
    return np.asarray(values[key], np.float32) if key in values else None


def test_fixtures_of_this_release_exist_and_are_small():
    # Four models, each as a .keras file and a SavedModel; a few hundred kB per release.
    assert RELEASES, f"no release folder with values.json under {FIXTURES}"
    newest = {name for release, name in CASES if release == RELEASES[-1]}
    assert newest >= {"real_nvp", "multiscale_batch_norm", "multiscale_act_norm", "conditional"}
    for release in RELEASES:
        assert sum(f.stat().st_size for f in release.iterdir()) < 2**20, release


@pytest.mark.parametrize("release, name", CASES, ids=IDS)
def test_the_keras_file_loads_and_answers_as_stored(release, name):
    values = _values(release, name)
    model = keras.models.load_model(release / f"{name}.keras")
    context = _array(values, "context")
    np.testing.assert_allclose(model.log_prob(_array(values, "inputs"), context=context), values["log_prob"],
                               **TOLERANCE)
    samples = model.sample(len(values["samples"]), seed=values["seed"], context=_array(values, "sample_context"))
    np.testing.assert_allclose(samples, values["samples"], **TOLERANCE)


@pytest.mark.parametrize("release, name", CASES, ids=IDS)
def test_the_saved_model_loads_and_answers_as_stored(release, name, tmp_path):
    values = _values(release, name)
    with zipfile.ZipFile(release / f"{name}.savedmodel.zip") as archive:
        archive.extractall(tmp_path)
    loaded = tf.saved_model.load(str(tmp_path))
    context = {} if "context" not in values else {"context": tf.constant(_array(values, "context"))}
    log_prob = loaded.signatures["log_prob"](x=tf.constant(_array(values, "inputs")), **context)["log_prob"]
    np.testing.assert_allclose(log_prob, values["log_prob"], **TOLERANCE)
    shared = {} if "context" not in values else {"context": tf.constant(_array(values, "sample_context"))}
    samples = loaded.signatures["sample"](num_samples=tf.constant(len(values["samples"]), tf.int32),
                                          seed=tf.constant(values["seed"], tf.int64),
                                          temperature=tf.constant(1.0), **shared)["samples"]
    np.testing.assert_allclose(samples, values["samples"], **TOLERANCE)
