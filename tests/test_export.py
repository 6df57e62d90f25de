"""export_saved_model: versioned, atomic SavedModels that TF Serving's loader serves.

TF Serving itself is not installed here; its C++ SavedModel loader is, in the TensorFlow wheel,
and `serving_check.run_signature_c` runs signatures through it. Each subprocess (the C loader
~1 s, a fresh Python ~10 s for TensorFlow's import) is costly on 2 cores, so the exports are made
once per module and the slow checks are one call each; `saved_model_cli` is checked once, in
tests/test_serving_check.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp import FlowModel, serving_check
from tfp_realnvp.export import saved_model as export_module
from tfp_realnvp import files as files_module
from tfp_realnvp.export import CONFIG_ASSET, SIGNATURE_KEYS, export_saved_model

# Tolerances, with their reasons.
# The same float32 graph run by another executor (the C++ session, grappler's rewrites, another
# process): kernels may round differently by an ulp or two; log p(x) ~ -10 has ulp ~1e-6.
ATOL32 = 1e-5
# Samples: stateless normal draws are bit-identical; the couplings' float32 arithmetic on values
# of order 1 may differ by an ulp or two (~2.4e-7 each) between executors.
SAMPLE_TOL32 = dict(rtol=1e-6, atol=1e-6)
# float64 end to end, in process: the same kernels, so agreement to eps64 * a few.
ATOL64 = 1e-12

PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SERVING_SECTION = "## Serving with TF Serving"
EVENT_SIZE = 2  # the main export's D, the README's two_moons

EXPECTED_SIGNATURES = {
    # key: (inputs, outputs), each {name: (dtype, shape)}; -1 is the dynamic batch dimension.
    "serving_default": ({"x": ("float32", (-1, 2))}, {"log_prob": ("float32", (-1,))}),
    "log_prob": ({"x": ("float32", (-1, 2))}, {"log_prob": ("float32", (-1,))}),
    "sample": (
        {"num_samples": ("int32", ()), "seed": ("int64", ()), "temperature": ("float32", ())},
        {"samples": ("float32", (-1, 2))},
    ),
    "forward": ({"z": ("float32", (-1, 2))}, {"x": ("float32", (-1, 2))}),
    "inverse": (
        {"x": ("float32", (-1, 2))},
        {"z": ("float32", (-1, 2)), "log_det_jacobian": ("float32", (-1,))},
    ),
}

# Raw data in the main model's units (its standardisation is fitted on mean (1, -2), std (2, 0.5)).
X = np.array([[0.5, -2.0], [3.0, -1.5], [-1.0, -2.5], [1.0, -2.0]], np.float32)
# Integer data in {0, ..., 16} for the preprocessing variant (integer_levels=17, logit).
X_INT = np.array([[0, 16, 3], [5, 5, 5], [16, 0, 8]], np.float32)
SAMPLE_REQUEST = {"num_samples": np.int32(5), "seed": np.int64(2**40 + 3), "temperature": np.float32(0.7)}


def _randomize(model: FlowModel, seed: int) -> FlowModel:
    """Random conditioner weights, so the flow is not the identity a fresh one is."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(0.3 * rng.standard_normal(variable.shape).astype(variable.dtype))
    return model


def _main_model(flow_dtype: str = "float32") -> FlowModel:
    model = FlowModel(EVENT_SIZE, num_couplings=2, hidden_units=(8,), seed=3, flow_dtype=flow_dtype)
    rng = np.random.default_rng(0)
    model.adapt(rng.standard_normal((200, 2)) * [2.0, 0.5] + [1.0, -2.0])
    return _randomize(model, seed=1)


@pytest.fixture(scope="module")
def loader() -> pathlib.Path:
    return serving_check.compile_loader()


@pytest.fixture(scope="module")
def model() -> FlowModel:
    return _main_model()


@pytest.fixture(scope="module")
def preprocessing_model() -> FlowModel:
    """Integer data with a logit: the preprocessing's log-determinants must be in the export."""
    model = FlowModel(3, num_couplings=2, hidden_units=(8,), integer_levels=17, logit_alpha=0.05)
    model.adapt(np.random.default_rng(2).integers(0, 17, size=(100, 3)).astype("float32"))
    return _randomize(model, seed=4)


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory) -> pathlib.Path:
    return export_saved_model(model, tmp_path_factory.mktemp("exports") / "two_moons")


@pytest.fixture(scope="module")
def preprocessing_export_dir(preprocessing_model, tmp_path_factory) -> pathlib.Path:
    return export_saved_model(preprocessing_model, tmp_path_factory.mktemp("exports") / "digits")


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(str(export_dir))


# -- layout and signatures ---------------------------------------------------------------------


def test_export_writes_version_1_in_tf_serving_layout(export_dir, model):
    assert export_dir.name == "1"
    assert sorted(p.name for p in export_dir.parent.iterdir()) == ["1"]  # no temporary left
    assert (export_dir / "saved_model.pb").is_file()
    assert (export_dir / "variables" / "variables.index").is_file()
    config = json.loads((export_dir / CONFIG_ASSET).read_text())
    assert config["config"] == json.loads(json.dumps(model.get_config()))
    assert config["signatures"] == list(SIGNATURE_KEYS)


def test_signatures_as_the_cpp_loader_sees_them(export_dir):
    specs = serving_check.signature_specs(export_dir)
    assert sorted(specs) == sorted(SIGNATURE_KEYS)
    for key, (inputs, outputs) in EXPECTED_SIGNATURES.items():
        assert specs[key]["method_name"] == "tensorflow/serving/predict", key
        actual_inputs = {k: (v["dtype"], v["shape"]) for k, v in specs[key]["inputs"].items()}
        actual_outputs = {k: (v["dtype"], v["shape"]) for k, v in specs[key]["outputs"].items()}
        assert (actual_inputs, actual_outputs) == (inputs, outputs), key


def test_the_graph_has_no_python(export_dir):
    # A py_func would need this Python process: TF Serving's C++ runtime could not run it.
    assert not serving_check.graph_op_types(export_dir) & PY_FUNC_OPS


# -- the export reproduces the model --------------------------------------------------------------

_FRESH_PYTHON = r"""
import json, sys
import numpy as np
import tensorflow as tf

request = json.loads(sys.argv[1])
results = {}
for name, job in request["exports"].items():
    signatures = tf.saved_model.load(job["dir"]).signatures
    x = tf.constant(job["x"], tf.float32)
    results[name + "/log_prob"] = signatures["serving_default"](x=x)["log_prob"].numpy()
    results[name + "/samples"] = signatures["sample"](
        num_samples=tf.constant(5, tf.int32),
        seed=tf.constant(2**40 + 3, tf.int64),
        temperature=tf.constant(0.7, tf.float32),
    )["samples"].numpy()
np.savez(request["out"], **results)
print(json.dumps({m: m in sys.modules for m in ("tensorflow_probability", "tfp_realnvp")}))
"""


@pytest.fixture(scope="module")
def fresh_python(export_dir, preprocessing_export_dir, tmp_path_factory) -> dict:
    """Both exports loaded and run by a Python that has only TensorFlow: one subprocess."""
    out = tmp_path_factory.mktemp("fresh") / "results.npz"
    request = {
        "out": str(out),
        "exports": {
            "main": {"dir": str(export_dir), "x": X.tolist()},
            "preprocessing": {"dir": str(preprocessing_export_dir), "x": X_INT.tolist()},
        },
    }
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PYTHON, json.dumps(request)],
        capture_output=True,
        text=True,
        cwd=out.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    with np.load(out) as arrays:
        return {"modules": json.loads(result.stdout.strip().splitlines()[-1]), **arrays}


def test_fresh_python_without_tfp_reproduces_log_prob_and_sample(
    fresh_python, model, preprocessing_model
):
    assert fresh_python["modules"] == {"tensorflow_probability": False, "tfp_realnvp": False}
    for name, flow, x in [("main", model, X), ("preprocessing", preprocessing_model, X_INT)]:
        np.testing.assert_allclose(
            fresh_python[f"{name}/log_prob"], flow.log_prob(x).numpy(), rtol=0, atol=ATOL32
        )
        expected = flow.sample(5, seed=2**40 + 3, temperature=0.7).numpy()
        np.testing.assert_allclose(fresh_python[f"{name}/samples"], expected, **SAMPLE_TOL32)


@pytest.mark.parametrize("which", ["main", "preprocessing"])
def test_c_loader_serving_default_matches_model_log_prob(
    loader, which, request, export_dir, preprocessing_export_dir
):
    if which == "main":
        flow, path, x = request.getfixturevalue("model"), export_dir, X
    else:  # raw integer data in: the standardisation, 1/17 scale and logit run in the graph
        flow, path, x = request.getfixturevalue("preprocessing_model"), preprocessing_export_dir, X_INT
    outputs = serving_check.run_signature_c(path, "serving_default", {"x": x})
    assert outputs["log_prob"].shape == (len(x),) and outputs["log_prob"].dtype == np.float32
    np.testing.assert_allclose(outputs["log_prob"], flow.log_prob(x).numpy(), rtol=0, atol=ATOL32)


def test_c_loader_sample_is_seeded_like_the_model(loader, export_dir, model):
    outputs = serving_check.run_signature_c(export_dir, "sample", SAMPLE_REQUEST)
    expected = model.sample(5, seed=2**40 + 3, temperature=0.7).numpy()
    assert outputs["samples"].shape == (5, EVENT_SIZE)
    np.testing.assert_allclose(outputs["samples"], expected, **SAMPLE_TOL32)
    # Another seed, other samples: the seed reaches the sampler.
    other = model.sample(5, seed=2**40 + 4, temperature=0.7).numpy()
    assert np.abs(outputs["samples"] - other).min() > 1e-3


def test_c_loader_inverse_and_forward(loader, preprocessing_export_dir, preprocessing_model):
    bijector = preprocessing_model.distribution.bijector
    inverse = serving_check.run_signature_c(preprocessing_export_dir, "inverse", {"x": X_INT})
    np.testing.assert_allclose(inverse["z"], bijector.inverse(X_INT).numpy(), rtol=0, atol=ATOL32)
    ildj = bijector.inverse_log_det_jacobian(X_INT, event_ndims=1).numpy()
    np.testing.assert_allclose(inverse["log_det_jacobian"], ildj, rtol=0, atol=ATOL32)
    # log p(x) = log N(z; 0, I) + log|det dz/dx|: the log-det holds the preprocessing's part.
    log_normal = -0.5 * np.sum(inverse["z"].astype(np.float64) ** 2, axis=1) - 1.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(
        log_normal + inverse["log_det_jacobian"],
        preprocessing_model.log_prob(X_INT).numpy(),
        rtol=0,
        atol=ATOL32,
    )
    # forward maps back to the data (float32 through a logit and 2 couplings: ~1e-4 on 0..16).
    forward = serving_check.run_signature_c(preprocessing_export_dir, "forward", {"z": inverse["z"]})
    np.testing.assert_allclose(forward["x"], X_INT, rtol=0, atol=1e-3)


def test_float64_model_exports_float64_signatures(model, tmp_path):
    model64 = _main_model("float64")
    path = export_saved_model(model64, tmp_path)
    specs = serving_check.signature_specs(path)
    assert specs["log_prob"]["inputs"]["x"]["dtype"] == "float64"
    assert specs["sample"]["inputs"]["temperature"]["dtype"] == "float64"
    signatures = tf.saved_model.load(str(path)).signatures
    x = X.astype(np.float64)
    log_prob = signatures["log_prob"](x=tf.constant(x))["log_prob"].numpy()
    np.testing.assert_allclose(log_prob, model64.log_prob(x).numpy(), rtol=0, atol=ATOL64)
    samples = signatures["sample"](
        num_samples=tf.constant(3), seed=tf.constant(7, tf.int64), temperature=tf.constant(0.5, tf.float64)
    )["samples"].numpy()
    np.testing.assert_allclose(
        samples, model64.sample(3, seed=7, temperature=0.5).numpy(), rtol=0, atol=ATOL64
    )


# -- bad input ----------------------------------------------------------------------------------

WRONG_SHAPE = r"is not compatible with expected shape \[\?,2\]"


@pytest.mark.parametrize("shape", [(4, 1), (4, 3), (2,)], ids=["1-feature", "3-features", "no-batch"])
def test_c_loader_rejects_wrong_feature_count(loader, export_dir, shape):
    # (4, 1) would broadcast against the [2] standardisation without the shape check.
    with pytest.raises(RuntimeError, match=WRONG_SHAPE):
        serving_check.run_signature_c(export_dir, "serving_default", {"x": np.zeros(shape, np.float32)})


@pytest.mark.parametrize("key, input_key", [("log_prob", "x"), ("forward", "z"), ("inverse", "x")])
@pytest.mark.parametrize("num_features", [1, 3])
def test_python_loader_rejects_wrong_feature_count(loaded, key, input_key, num_features):
    x = tf.zeros([4, num_features])
    with pytest.raises(tf.errors.InvalidArgumentError, match=WRONG_SHAPE):
        loaded.signatures[key](**{input_key: x})


def test_c_loader_rejects_batched_sample_inputs(loader, export_dir):
    # What a row-format request makes of the scalars: batches of shape [1].
    inputs = {k: np.reshape(v, [1]) for k, v in SAMPLE_REQUEST.items()}
    with pytest.raises(RuntimeError, match=r"\[1\] is not compatible with expected shape \[\]"):
        serving_check.run_signature_c(export_dir, "sample", inputs)


def test_negative_num_samples_is_an_error(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_samples must be >= 0"):
        loaded.signatures["sample"](
            num_samples=tf.constant(-1), seed=tf.constant(0, tf.int64), temperature=tf.constant(1.0)
        )


def test_nan_row_gives_nan_log_prob_and_leaves_other_rows(loader, export_dir, model):
    x = np.concatenate([X, [[np.nan, 0.0], [np.inf, 0.0]]]).astype(np.float32)
    outputs = serving_check.run_signature_c(export_dir, "serving_default", {"x": x})
    assert np.isnan(outputs["log_prob"][-2:]).all()  # NaN and inf in: NaN out, no error
    np.testing.assert_allclose(outputs["log_prob"][:-2], model.log_prob(X).numpy(), rtol=0, atol=ATOL32)
    assert np.isnan(model.log_prob(x).numpy()[-2:]).all()  # as the model itself


def test_logit_out_of_range_gives_nan(loader, preprocessing_export_dir, preprocessing_model):
    # integer_levels=17, logit_alpha=0.05: v = x / 17 must lie in (-0.05 / 0.95, 1).
    x = np.array([[17, 3, 3], [-1, 3, 3], [16.9, 3, 3], [-0.5, 3, 3]], np.float32)
    outputs = serving_check.run_signature_c(preprocessing_export_dir, "serving_default", {"x": x})
    expected = preprocessing_model.log_prob(x).numpy()
    assert np.isnan(outputs["log_prob"][:2]).all() and np.isnan(expected[:2]).all()
    assert np.isfinite(outputs["log_prob"][2:]).all()  # -0.5 / 17 > -0.05 / 0.95: still finite
    np.testing.assert_allclose(outputs["log_prob"][2:], expected[2:], rtol=0, atol=ATOL32)


# -- versions and atomic writes ------------------------------------------------------------------


def _fake_write(model, path):
    """Stands in for the (seconds-long) SavedModel write where only the folders matter."""
    (path / "saved_model.pb").write_bytes(b"fake")


@pytest.fixture
def fake_write(monkeypatch):
    monkeypatch.setattr(export_module, "_write_saved_model", _fake_write)


def _snapshot(directory: pathlib.Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
        for p in sorted(directory.rglob("*"))
    }


def test_versions_count_up_from_the_highest(fake_write, model, tmp_path):
    base = tmp_path / "new" / "models"  # created, parents too
    assert export_saved_model(model, base) == base / "1"
    assert export_saved_model(model, base) == base / "2"
    (base / "7").mkdir()
    (base / "notes").mkdir()  # non-numeric names are not versions, as in TF Serving
    (base / "12.txt").write_text("")
    assert export_saved_model(model, base) == base / "8"
    assert export_saved_model(model, base, version=5) == base / "5"
    assert export_saved_model(model, base) == base / "9"


def test_existing_version_is_never_overwritten(fake_write, model, tmp_path):
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "saved_model.pb").write_bytes(b"theirs")
    (tmp_path / "004").mkdir()  # TF Serving reads this as version 4
    before = _snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="version 3 already exists in .*; choose another version or leave version=None"):
        export_saved_model(model, tmp_path, version=3)
    with pytest.raises(FileExistsError, match=r"version 4 already exists in .* \(as '004'\)"):
        export_saved_model(model, tmp_path, version=4)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "version, match",
    [
        (0, r"version must be in \[1, 2\*\*63 - 1\] \(TF Serving's int64\); got 0"),
        (-2, r"version must be in \[1, 2\*\*63 - 1\] .*; got -2"),
        (2**63, r"version must be in \[1, 2\*\*63 - 1\] .*; got 9223372036854775808"),
        (1.0, "version must be a positive integer or None; got 1.0 of type float"),
        ("2", "version must be a positive integer or None; got '2' of type str"),
        (True, "version must be a positive integer or None; got True of type bool"),
    ],
)
def test_bad_version_is_a_value_error(fake_write, model, tmp_path, version, match):
    with pytest.raises(ValueError, match=match):
        export_saved_model(model, tmp_path, version=version)
    assert list(tmp_path.iterdir()) == []


def test_numpy_integer_version_is_accepted(fake_write, model, tmp_path):
    assert export_saved_model(model, tmp_path, version=np.int64(4)) == tmp_path / "4"


def test_bad_model_or_base_dir(fake_write, model, tmp_path):
    with pytest.raises(TypeError, match="model must be a FlowModel; got Sequential"):
        export_saved_model(keras.Sequential(), tmp_path)
    with pytest.raises(ValueError, match=r"standardisation has not been fitted: call model.fit\(x\)"):
        export_saved_model(FlowModel(2, num_couplings=2, hidden_units=(4,)), tmp_path)
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(NotADirectoryError, match="base_dir .*file exists and is not a directory"):
        export_saved_model(model, file)


@pytest.fixture
def user_files(tmp_path) -> pathlib.Path:
    """A base directory with a user's existing version and notes."""
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_bytes(b"version one")
    (tmp_path / "NOTES.md").write_text("mine")
    return tmp_path


def _partial_write(model, path):
    """What a crash mid-write leaves: some folders and half a variables file."""
    (path / "saved_model.pb").write_bytes(b"graph")
    (path / "variables").mkdir()
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(b"half")


@pytest.mark.parametrize(
    "error", [OSError("disk full"), KeyboardInterrupt()], ids=["error", "interrupt"]
)
@pytest.mark.parametrize("version", [None, 2])
def test_failure_mid_export_leaves_no_version_and_touches_nothing(
    model, user_files, monkeypatch, error, version
):
    def write_then_fail(model, path):
        _partial_write(model, path)
        raise error

    monkeypatch.setattr(export_module, "_write_saved_model", write_then_fail)
    before = _snapshot(user_files)
    with pytest.raises(type(error)):
        export_saved_model(model, user_files, version=version)
    assert _snapshot(user_files) == before  # no "2", no .tmp-*, "1" and NOTES.md intact


def test_failure_after_the_write_removes_the_whole_export(fake_write, model, user_files, monkeypatch):
    # The whole export on disk under the temporary name, then a failure before the rename.
    def fail(path):
        assert (path / "saved_model.pb").is_file()
        raise OSError("fsync failed")

    monkeypatch.setattr(files_module, "_fsync_tree", fail)
    before = _snapshot(user_files)
    with pytest.raises(OSError, match="fsync failed"):
        export_saved_model(model, user_files)
    assert _snapshot(user_files) == before


def test_temporary_folder_is_hidden_and_not_a_version(model, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(export_module, "_write_saved_model", lambda model, path: seen.append(path.name))
    export_saved_model(model, tmp_path, version=6)
    assert re.fullmatch(r"\.tmp-6-\w+", seen[0])  # TF Serving loads only integer names


def test_concurrent_exporter_taking_the_version(fake_write, model, tmp_path, monkeypatch):
    real_rename = os.rename

    def rename_after_another_exporter(source, target):
        # Another process renames its export to 1 or 5 just before this one does.
        if pathlib.Path(target).name in ("1", "5") and not os.path.exists(target):
            os.mkdir(target)
            pathlib.Path(target, "saved_model.pb").write_bytes(b"theirs")
        real_rename(source, target)

    monkeypatch.setattr(export_module.os, "rename", rename_after_another_exporter)
    # version=None: the loser takes the next number.
    assert export_saved_model(model, tmp_path) == tmp_path / "2"
    assert (tmp_path / "1" / "saved_model.pb").read_bytes() == b"theirs"
    # An explicit version: an error, and the winner's export is left alone.
    with pytest.raises(FileExistsError, match="version 5 already exists"):
        export_saved_model(model, tmp_path, version=5)
    assert (tmp_path / "5" / "saved_model.pb").read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2", "5"]


def test_gives_up_when_every_version_is_taken(fake_write, model, tmp_path, monkeypatch):
    real_rename = os.rename

    def always_beaten(source, target):
        os.mkdir(target)
        pathlib.Path(target, "saved_model.pb").write_bytes(b"theirs")
        real_rename(source, target)

    monkeypatch.setattr(export_module.os, "rename", always_beaten)
    with pytest.raises(FileExistsError, match="could not claim a free version in .* after 16 attempts"):
        export_saved_model(model, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# -- the README's requests ------------------------------------------------------------------------


def _serving_section() -> str:
    text = README.read_text()
    assert SERVING_SECTION in text, f"README.md has no {SERVING_SECTION!r} section"
    section = text.split(SERVING_SECTION, 1)[1]
    return section.split("\n## ", 1)[0]


CONDITIONAL_SUBSECTION = "### A conditional model"


def _readme_json_blocks(conditional: bool = False) -> list[dict]:
    section = _serving_section()
    assert CONDITIONAL_SUBSECTION in section, f"the serving section has no {CONDITIONAL_SUBSECTION!r}"
    plain, given = section.split(CONDITIONAL_SUBSECTION, 1)
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", given if conditional else plain, re.S)]


def _shape(value) -> tuple[int, ...]:
    return np.shape(np.asarray(value, dtype=np.float64))


def _fits(shape: tuple[int, ...], spec_shape: tuple[int, ...]) -> bool:
    return len(shape) == len(spec_shape) and all(s == d or d == -1 for s, d in zip(shape, spec_shape))


def _request_inputs(body: dict, spec: dict) -> dict[str, np.ndarray]:
    """Checks a documented request against the signature; returns its inputs as arrays."""
    inputs = spec["inputs"]
    dtypes = {k: np.dtype(v["dtype"]) for k, v in inputs.items()}
    if "instances" in body:
        instances = body["instances"]
        assert isinstance(instances, list) and instances, "instances must be a non-empty list"
        # Row format stacks instances along a new 0-th dimension: scalars cannot be rows.
        assert all(v["shape"] and v["shape"][0] == -1 for v in inputs.values()), (
            "row format needs every input batched along dimension 0"
        )
        if all(isinstance(row, dict) for row in instances):
            for row in instances:
                assert sorted(row) == sorted(inputs)
            arrays = {k: np.array([row[k] for row in instances]) for k in inputs}
        else:
            assert len(inputs) == 1, "bare rows are only for single-input signatures"
            arrays = {next(iter(inputs)): np.array(instances)}
    else:
        columns = body["inputs"]
        if not isinstance(columns, dict):
            assert len(inputs) == 1
            columns = {next(iter(inputs)): columns}
        assert sorted(columns) == sorted(inputs)
        arrays = {k: np.array(v) for k, v in columns.items()}
    for key, array in arrays.items():
        assert _fits(array.shape, inputs[key]["shape"]), (key, array.shape, inputs[key]["shape"])
    return {k: v.astype(dtypes[k]) for k, v in arrays.items()}


def _check_response(body: dict, request: dict, outputs: dict[str, np.ndarray]) -> None:
    """A documented response has the structure TF Serving gives the request's outputs."""
    if "instances" in request:
        predictions = body["predictions"]
        assert len(predictions) == len(request["instances"])
        if len(outputs) == 1:  # one output: its name is omitted
            (output,) = outputs.values()
            assert all(_shape(p) == output.shape[1:] for p in predictions)
        else:
            for prediction in predictions:
                assert sorted(prediction) == sorted(outputs)
                assert all(_shape(prediction[k]) == v.shape[1:] for k, v in outputs.items())
    else:
        documented = body["outputs"]
        if len(outputs) == 1:
            (output,) = outputs.values()
            assert _shape(documented) == output.shape
        else:
            assert sorted(documented) == sorted(outputs)
            assert all(_shape(documented[k]) == v.shape for k, v in outputs.items())


def _run_readme_requests(blocks: list[dict], export_dir: pathlib.Path) -> dict[str, set[str]]:
    """Runs each documented request through the C++ loader and checks the response after it."""
    specs = serving_check.signature_specs(export_dir)
    documented = {"instances": set(), "inputs": set()}
    request = outputs = None
    runs: dict[tuple, dict[str, np.ndarray]] = {}  # rows and columns of the same data run once
    for body in blocks:
        if "predictions" in body or "outputs" in body:
            assert request is not None, f"response before any request: {body}"
            _check_response(body, request, outputs)
            request = None
            continue
        assert sorted(body) in (["instances", "signature_name"], ["inputs", "signature_name"],
                                ["instances"], ["inputs"]), body
        key = body.get("signature_name", "serving_default")
        assert key in specs, f"README requests unknown signature {key!r}"
        inputs = _request_inputs(body, specs[key])
        run_key = (key, *((k, v.shape, v.tobytes()) for k, v in sorted(inputs.items())))
        if run_key not in runs:
            runs[run_key] = serving_check.run_signature_c(export_dir, key, inputs)
        outputs = runs[run_key]
        documented["instances" if "instances" in body else "inputs"].add(key)
        request = body
    return documented


def test_readme_requests_fit_the_signatures_and_run(loader, export_dir):
    documented = _run_readme_requests(_readme_json_blocks(), export_dir)
    assert documented["inputs"] == set(SIGNATURE_KEYS)
    assert documented["instances"] == set(SIGNATURE_KEYS) - {"sample"}


def test_readme_conditional_requests_fit_the_signatures_and_run(loader, tmp_path):
    model = _randomize(FlowModel(EVENT_SIZE, num_couplings=2, hidden_units=(8,), context_size=2, standardize=False),
                       seed=5)
    documented = _run_readme_requests(_readme_json_blocks(conditional=True), export_saved_model(model, tmp_path))
    assert documented == {"instances": {"serving_default"}, "inputs": {"serving_default", "sample"}}


def test_readme_states_nan_behaviour():
    # The claim test_nan_row_gives_nan_log_prob_and_leaves_other_rows holds.
    section = " ".join(_serving_section().split())
    assert "A row holding `NaN`" in section and "gets `NaN` as its `log_prob`" in section


def test_conditional_model_never_becomes_the_next_version_of_an_unconditional_one(export_dir):
    # A newcomer's `train --condition-on-label` once exported into saved_models/two_moons: its newest
    # version then needed a `context`, and TF Serving refused the README's plain request.
    from tfp_realnvp.cli.commands import default_export_dir
    from tfp_realnvp.export.saved_model import IncompatibleVersionError
    from tfp_realnvp.training import TrainingConfig

    conditional = FlowModel(2, num_couplings=1, hidden_units=(4,), context_size=2)
    conditional.adapt(X)
    base = export_dir.parent
    with pytest.raises(IncompatibleVersionError, match=r"this model signature 'forward' takes inputs context float32 "
                                                       r"\[-1, 2\], z float32 \[-1, 2\], not z float32 \[-1, 2\] .* "
                                                       r"export it to a base folder of its own"):
        export_saved_model(conditional, base)
    assert sorted(p.name for p in base.iterdir()) == ["1"]  # nothing left behind
    config = TrainingConfig.for_dataset("two_moons").replace(condition_on_label=True)
    assert default_export_dir(config) == os.path.join("saved_models", "two_moons_conditional")
