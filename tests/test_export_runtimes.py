"""ONNX and LiteRT exports: every built-in flow in both runtimes, checked against the SavedModel.

The flows come from one registry (`FLOWS`): a new flow (the spline coupling) is one line. Each
is converted once per format in module-scoped fixtures and compared with one set of C++ loader
answers (`equivalence.reference`), which the exports themselves also check.
"""

from __future__ import annotations

import functools
import json
import pathlib
import tempfile

import numpy as np
import pytest

from tfp_realnvp import FlowModel, export_litert, export_onnx
from tfp_realnvp.export import equivalence, graphs
from tfp_realnvp.export.artifact import CONFIG_FILE, UnsupportedModelError
from tfp_realnvp.export.litert import run_litert
from tfp_realnvp.export.onnx import run_onnx
from tfp_realnvp.export.saved_model import load_exported_model

# name -> FlowModel arguments: tiny, and together every kind of flow (vector, conditional, multi-scale
# image with ActNorm and Glow's 1x1 mixing, integer data with the logit, spline couplings, LU mixing,
# whitening).
FLOWS = {
    "real_nvp_conditional": dict(event_size=3, num_couplings=2, hidden_units=(8,), context_size=2),
    "multiscale_integer": dict(event_shape=(4, 4, 1), flow="real_nvp_multiscale", num_scales=1, num_filters=4,
                               num_blocks=1, num_checkerboard_couplings=1, num_channel_couplings=1,
                               num_final_couplings=1, normalization="actnorm", standardize=False,
                               integer_levels=4, logit_alpha=0.05, mixing="1x1"),
    # The spline coupling, the learned LU mixing and the whitening of your own tables.
    "real_nvp_spline_lu_whitened": dict(event_size=3, num_couplings=2, hidden_units=(8,), transform="spline",
                                        num_bins=4, permutation="lu", whiten=True),
}
FORMATS = {"onnx": (export_onnx, run_onnx, ".onnx"), "litert": (export_litert, run_litert, ".tflite")}


def _model(arguments: dict) -> FlowModel:
    model = FlowModel(**arguments)
    rng = np.random.default_rng(0)
    shape = model.event_shape
    if model.preprocessing.integer_levels:
        data = rng.integers(0, model.preprocessing.integer_levels, size=(64, *shape)).astype(np.float32)
    else:
        data = rng.normal(size=(64, *shape)).astype(np.float32) * 2 + 1
    model.adapt(data)
    context = np.zeros((1, model.context_size), np.float32) if model.context_size else None
    model.log_prob(data[:2], context=context)  # builds ActNorm's initialisation
    for variable in model.trainable_variables:  # a fresh flow is the identity: give every weight a value
        variable.assign(rng.normal(scale=0.3, size=variable.shape).astype(variable.dtype))
    return model


@functools.cache
def _exported(name: str):
    model = _model(FLOWS[name])
    reference = equivalence.reference(model)  # one set of C++ loader runs for both formats and every test
    folder = pathlib.Path(tempfile.mkdtemp(prefix=f"export_{name}_"))
    paths = {fmt: export(model, folder / f"model.{fmt}", reference=reference)
             for fmt, (export, _, _) in FORMATS.items()}
    return model, reference, paths


@pytest.fixture(scope="module", params=list(FLOWS))
def exported(request):
    return _exported(request.param)


@pytest.fixture(scope="module")
def integer_exported():
    return _exported("multiscale_integer")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_signature_agrees_with_the_saved_model_in_its_runtime(exported, fmt):
    model, reference, paths = exported
    _, run, suffix = FORMATS[fmt]
    expected = ["forward", "inverse", "log_prob", *(["log_prob_integer"] if model.preprocessing.integer_levels else [])]
    assert sorted(p.stem for p in paths[fmt].glob(f"*{suffix}")) == expected
    config = json.loads((paths[fmt] / CONFIG_FILE).read_text())
    for key in expected:
        outputs = run(paths[fmt] / f"{key}{suffix}", reference.inputs[key])
        for name, want in reference.outputs[key].items():
            # the export's own tolerance (equivalence.py says why)
            np.testing.assert_allclose(outputs[name], want, rtol=equivalence.RTOL, atol=equivalence.ATOL)
        assert config["largest_difference_from_saved_model"][key] <= equivalence.ATOL + 1e3 * equivalence.RTOL
    # the check compares a real model: latents that move, log-densities far from a constant
    assert np.ptp(reference.outputs["log_prob"]["log_prob"]) > 0.1


def test_a_mismatch_is_refused_naming_signature_input_and_difference(integer_exported, tmp_path):
    from tfp_realnvp.export.artifact import write_artifact

    model, reference, _ = integer_exported

    def run(file, feeds):  # a runtime that answers 0, 1, ..., 7 nats off on the rows of log_prob
        outputs = dict(reference.outputs[file.stem])
        if file.stem == "log_prob":
            outputs["log_prob"] = outputs["log_prob"] + np.arange(equivalence.ROWS)
        return outputs

    with pytest.raises(equivalence.ExportMismatchError,
                       match=r"signature 'log_prob' .* output 'log_prob' for input row 7 is .* \(largest difference 7 "):
        write_artifact(model, tmp_path / "bad", fmt="onnx", suffix=".onnx", convert=lambda f, file: file.write_bytes(b""),
                       run=run, reference=reference)
    assert not any(tmp_path.iterdir())  # nothing written, no temporary left


def test_an_existing_path_is_never_overwritten(integer_exported, tmp_path):
    model, reference, _ = integer_exported
    (tmp_path / "model.onnx").mkdir()
    (tmp_path / "model.onnx" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists; not overwriting it"):
        export_onnx(model, tmp_path / "model.onnx", reference=reference)
    assert (tmp_path / "model.onnx" / "mine.txt").read_text() == "keep"


def test_integer_signature_gives_nan_for_rows_that_are_not_integers_in_range(integer_exported):
    model, reference, paths = integer_exported
    x = reference.inputs["log_prob_integer"]["x"].copy()
    x[1].flat[0], x[2].flat[0] = 0.5, model.preprocessing.integer_levels
    for fmt, (_, run, suffix) in FORMATS.items():
        got = run(paths[fmt] / f"log_prob_integer{suffix}", {"x": x})["log_prob"]
        assert np.isnan(got[1:3]).all() and np.isfinite(got[[0, *range(3, len(x))]]).all(), fmt
    # K and the seed are stated with the signature: in the ONNX model's description and flow_config.json
    import onnx

    assert "K = 1, stateless seed [0, 0]" in onnx.load(paths["onnx"] / "log_prob_integer.onnx").doc_string
    assert json.loads((paths["litert"] / CONFIG_FILE).read_text())["log_prob_integer"]["draws"] == 1



RUNTIMES = {"litert": (run_litert, ".tflite"), "onnx": (run_onnx, ".onnx")}
SHIPPED = sorted(pathlib.Path(__file__).parent.parent.glob("saved_models/*/1"))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """Each shipped model, with its log_prob (and digits' log_prob_integer) converted to both formats."""
    from tfp_realnvp.export import litert, onnx

    folder, models = tmp_path_factory.mktemp("shipped"), {}
    for version in SHIPPED:
        name = version.parent.name
        model = load_exported_model(version)
        keys = ["log_prob", *(["log_prob_integer"] if name == "digits" else [])]
        signatures = graphs.convertible_signatures(model)
        for key in keys:
            frozen = graphs.FrozenSignature(*signatures[key])
            for module, (_, suffix) in ((litert, RUNTIMES["litert"]), (onnx, RUNTIMES["onnx"])):
                module.convert_signature(frozen, folder / f"{name}-{key}{suffix}")
        models[name] = (model, version)
    return folder, models


def test_every_shipped_model_converts_and_agrees_the_digits_litert_error_fixed(shipped):
    """Each shipped model's log_prob as LiteRT and ONNX run it, against its own SavedModel in C++.

    LiteRT's converter made the digits model answer 11.0 nats low on every input before the graphs
    were constant-folded (graphs.py): this would fail by 11 nats again.
    """
    from tfp_realnvp.serving_check import run_signature_c

    folder, models = shipped
    assert sorted(models) == ["digits", "digits_multiscale", "two_moons"]
    for name, (model, version) in models.items():
        x = equivalence.fixed_inputs(model)["log_prob"]
        want = run_signature_c(version, "log_prob", x)["log_prob"]
        for fmt, (run, suffix) in RUNTIMES.items():
            # the export's tolerance (equivalence.py says why): 11 nats fails it by four orders
            np.testing.assert_allclose(run(folder / f"{name}-log_prob{suffix}", x)["log_prob"], want,
                                       rtol=equivalence.RTOL, atol=equivalence.ATOL, err_msg=f"{name} {fmt}")


# -- the integer signature answers raw integers honestly ------------------------------------------


def test_integer_signature_on_raw_digits_is_the_test_bits_per_dim_in_every_runtime(shipped, tmp_path):
    """Raw integer pixels of 200 held-out digits: within seed noise of the model's test bits/dim on them."""
    from tfp_realnvp.data import load_dataset
    from tfp_realnvp.export.saved_model import export_saved_model
    from tfp_realnvp.serving_check import run_signature_c

    folder, models = shipped
    model, _ = models["digits"]
    x = load_dataset("digits").test[:200].astype(np.float32)  # raw pixels 0..16, as clients hold them
    dims = x.shape[1] * np.log(2.0)
    answers = {"c++": run_signature_c(export_saved_model(model, tmp_path / "sm"), "log_prob_integer", {"x": x})}
    for fmt, (run, suffix) in RUNTIMES.items():
        answers[fmt] = run(folder / f"digits-log_prob_integer{suffix}", {"x": x})
    # The model's test bits/dim on these 200 images: the training's bound, one uniform draw per image (seed 0).
    noised = x + np.random.default_rng(0).uniform(size=x.shape).astype(np.float32)
    # TFP's graph, eagerly (one call for both batches: model.log_prob would compile XLA programs, seconds each)
    both = model.distribution.log_prob(np.concatenate([noised, x])).numpy()
    test_bits, raw_bits = -both[:len(x)] / dims, -both[len(x):] / dims
    noise = 3 * test_bits.std() / np.sqrt(len(x))  # three standard errors of the mean over 200 images
    for name, answer in answers.items():
        bits = -answer["log_prob"] / dims
        assert abs(bits.mean() - test_bits.mean()) < noise, (name, bits.mean(), test_bits.mean(), noise)
        # the runtimes agree with the C++ loader to the export's tolerance (equivalence.py says why)
        np.testing.assert_allclose(answer["log_prob"], answers["c++"]["log_prob"], rtol=equivalence.RTOL,
                                   atol=equivalence.ATOL)
    # the raw integers sent to log_prob (a density at the cell's corner) answer 2.758: the question differs
    assert raw_bits.mean() > 2.5


def test_saved_model_integer_signature_refuses_values_that_are_not_integers_in_range(integer_exported, tmp_path):
    from tfp_realnvp.export.saved_model import export_saved_model
    from tfp_realnvp.serving_check import run_signature_c

    model, reference, _ = integer_exported
    path = export_saved_model(model, tmp_path)
    x = reference.inputs["log_prob_integer"]["x"].copy()
    x[2].flat[0], x[4].flat[3], x[5].flat[1] = 0.5, 4.0, -1.0  # not an integer; above L - 1; below 0
    with pytest.raises(RuntimeError, match=r"log_prob_integer takes integers in \[0, 3\] \(integer_levels=4\); "
                                           r"rows\] \[2 4 5\] \[hold other values"):
        run_signature_c(path, "log_prob_integer", {"x": x})


# -- bad input ------------------------------------------------------------------------------------


def test_a_model_litert_cannot_hold_is_refused_naming_the_format(tmp_path):
    from tfp_realnvp.export import litert

    model = FlowModel(2, num_couplings=1, hidden_units=(4,), flow_dtype="float64", standardize=False)
    frozen = graphs.FrozenSignature(*graphs.convertible_signatures(model)["log_prob"])
    with pytest.raises(UnsupportedModelError, match=r"the litert format cannot hold signature 'log_prob': its inputs "
                                                    r"are float64, and LiteRT's kernels take float32"):
        litert.convert_signature(frozen, tmp_path / "log_prob.tflite")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fmt, module, extra", [("onnx", "onnxruntime", "onnx"), ("litert", "ai_edge_litert", "litert")])
def test_a_missing_extra_is_one_line_naming_it(fmt, module, extra, monkeypatch):
    from tfp_realnvp.export import litert, onnx

    monkeypatch.setitem(__import__("sys").modules, module, None)  # import fails, as when not installed
    if module == "ai_edge_litert":
        monkeypatch.setitem(__import__("sys").modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(ImportError, match=rf"^the {fmt} format needs .* pip install 'tfp-realnvp\[{extra}\]'$"):
        (onnx if fmt == "onnx" else litert).check_installed()


def test_cli_export_and_inspect_an_artifact(integer_exported, tmp_path, capsys):
    from tfp_realnvp import cli

    model, _, paths = integer_exported
    model.save(tmp_path / "m.keras")
    # The README's command, on the smallest model: written, checked, and said so.
    _exported("real_nvp_conditional")[0].save(tmp_path / "small.keras")
    assert cli.main(["export", "--format", "onnx", "--model", str(tmp_path / "small.keras"),
                     "--export-dir", str(tmp_path / "small.onnx")]) == 0
    assert "checked against the SavedModel in TensorFlow's C++ loader" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "small.onnx").iterdir()) == [
        "flow_config.json", "forward.onnx", "inverse.onnx", "log_prob.onnx"]
    assert cli.main(["inspect", str(paths["litert"])]) == 0
    shown = capsys.readouterr().out
    assert "LiteRT export" in shown and "signature 'log_prob_integer'" in shown and "x  float32  [-1, 4, 4, 1]" in shown
    assert cli.main(["inspect", str(paths["onnx"]), "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)["signatures"]
    assert specs["inverse"]["outputs"]["log_det_jacobian"] == {"dtype": "float32", "shape": [-1]}
    # bad input, each one line before any conversion
    taken = tmp_path / "taken"
    taken.mkdir()
    for argv, message in [
        (["--format", "onnx", "--export-dir", str(taken)], "already exists; not overwriting it"),
        (["--format", "litert", "--export-dir", str(tmp_path / "new"), "--version", "2"],
         "--version numbers SavedModel versions"),
    ]:
        assert cli.main(["export", "--model", str(tmp_path / "m.keras"), *argv]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["export", "--model", str(tmp_path / "m.keras"), "--export-dir", "x", "--format", "pmml"]) == 2
    assert "invalid choice: 'pmml'" in capsys.readouterr().err
