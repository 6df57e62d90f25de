"""The package as a user imports it: lazily, with no environment changed, and with its Keras classes registered."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import tfp_realnvp
from tfp_realnvp import FlowModel


def test_every_public_name_resolves():
    for name in tfp_realnvp.__all__:
        assert getattr(tfp_realnvp, name) is not None, name
    assert set(tfp_realnvp.__all__) <= set(dir(tfp_realnvp))
    with pytest.raises(AttributeError, match="module 'tfp_realnvp' has no attribute 'FlowModle'"):
        tfp_realnvp.FlowModle  # noqa: B018


# Each script runs in a fresh interpreter: what `import tfp_realnvp` does there is what users get.
# The first order's script also records what the bare import loaded (before Keras is imported):
# three interpreters, started together, each paying TensorFlow's import once.
_LOAD = """
import os, sys
before = dict(os.environ)
{imports}
model = keras.models.load_model(sys.argv[1])
print(type(model).__name__, float(model.log_prob([[0.5, -0.25]])[0]))
"""
_IMPORT_ONLY = """import tfp_realnvp
print(sorted(m for m in ("tensorflow", "keras", "tensorflow_probability", "numpy") if m in sys.modules))
print(dict(os.environ) == before)
import keras"""
_ORDERS = {
    "tfp_realnvp_then_keras": _IMPORT_ONLY,
    "keras_then_tfp_realnvp": "import keras\nimport tfp_realnvp",
    "a_public_name_then_keras": "from tfp_realnvp import real_nvp\nimport keras",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    path = tmp_path_factory.mktemp("package") / "model.keras"
    model = FlowModel(2, num_couplings=2, hidden_units=(4,), standardize=False)
    for v in model.trainable_variables:
        v.assign(np.full(v.shape, 0.1, v.dtype))
    model.save(path)
    expected = float(model.log_prob([[0.5, -0.25]])[0])
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    processes = {name: subprocess.Popen([sys.executable, "-c", _LOAD.format(imports=imports), str(path)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for name, imports in _ORDERS.items()}
    return expected, {name: (p.wait(timeout=300), *p.communicate()) for name, p in processes.items()}


def test_import_imports_no_tensorflow_and_sets_no_environment_variable(runs):
    status, out, err = runs[1]["tfp_realnvp_then_keras"]
    assert status == 0, err
    # numpy, TensorFlow and Keras load on first use of a public name; the command line's --help never does.
    assert out.split("\n")[:2] == ["[]", "True"], out


@pytest.mark.parametrize("order", sorted(_ORDERS))
def test_load_model_finds_the_flow_model_whatever_the_import_order(runs, order):
    expected, results = runs
    status, out, err = results[order]
    assert status == 0, err
    name, log_prob = out.splitlines()[-1].split()
    assert name == "FlowModel"
    # The same float32 graph in another process: a few ulps at most.
    assert float(log_prob) == pytest.approx(expected, abs=1e-5)
