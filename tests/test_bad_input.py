"""The README's bad-input catalogue, row by row: every row has an entry here, and every entry passes.

`CATALOGUE` maps each row's input (the table's first column) to how it is tested:

- `Check(run)`: run here. `run(env)` returns the error message the input gives (for the
  command line, the text after `tfp-realnvp: error: `), which the README's text must start
  (`...` in the README stands for any text); a row whose input is no error returns the README's
  description after checking the behaviour itself.
- `Asserted(test_file, pattern)`: an error another test file already asserts, with this very
  pattern (it must appear there, verbatim); the README's text must match it (`{path}` stands for
  a file's path). No second test of the same thing.
- `Behaviour(test_file, test_name)`: a behaviour (not an error) that the named test proves.

A row added to the README without an entry fails `test_every_row_has_an_entry`, and an entry
whose README text drifts from the code fails its own test.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
import pathlib
import re
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import small_fitted_model
import tensorflow as tf

from tfp_realnvp import FlowModel, cli, export_saved_model, serving_check

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "## Bad input"
WHERE = ("API", "CLI", "signature")


@dataclasses.dataclass(frozen=True)
class Check:
    run: Callable[[Any], str]


@dataclasses.dataclass(frozen=True)
class Asserted:
    test_file: str
    pattern: str
    regex: bool = True  # False: the test checks `pattern in message`, a plain substring


@dataclasses.dataclass(frozen=True)
class Behaviour:
    test_file: str
    test_name: str


@dataclasses.dataclass
class Env:
    """What the checks share: a working directory, a fitted model, its `.keras` file and export."""

    work: pathlib.Path
    model: FlowModel
    keras_file: pathlib.Path
    export: pathlib.Path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    work = tmp_path_factory.mktemp("bad_input")
    model = small_fitted_model()
    model.save(work / "m.keras")
    return Env(work, model, work / "m.keras", export_saved_model(model, work / "exports"))


def _error(call: Callable[[], Any], kind: type[BaseException] = Exception) -> str:
    """`Type: message` of what `call` raises; fails if it raises nothing."""
    with pytest.raises(kind) as raised:
        call()
    return f"{type(raised.value).__name__}: {raised.value}"


def _cli(env: Env, *argv: str) -> str:
    """`tfp-realnvp ARGV` in this process, from `env.work`: its one error line, without the prefix."""
    err = io.StringIO()
    with contextlib.chdir(env.work), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = cli.main(list(argv))
    lines = err.getvalue().strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("tfp-realnvp: error: "), (status, lines)
    return lines[0].removeprefix("tfp-realnvp: error: ")


def _served(env: Env, signature: str, inputs: dict) -> dict:
    return serving_check.run_signature_c(env.export, signature, inputs)


def _serving_error(env: Env, signature: str, inputs: dict) -> str:
    with pytest.raises(RuntimeError) as raised:
        _served(env, signature, inputs)
    return str(raised.value).removeprefix("C SavedModel loader: ")


X = np.array([[0.5, -0.2], [1.0, 0.3]], np.float32)


def _cast_inputs(env: Env) -> str:
    expected = env.model.log_prob(X).numpy()
    for x in (X.astype(np.float64), X.astype(np.int64), [[0.5, -0.2], [1.0, 0.3]]):
        got = env.model.log_prob(x).numpy()
        assert got.dtype == np.float32
        if np.asarray(x).dtype.kind == "f":
            np.testing.assert_array_equal(got, expected)
    return "none: cast to the model's `flow_dtype`"


def _empty_batch(env: Env) -> str:
    assert env.model.log_prob(np.zeros((0, 2), np.float32)).shape == (0,)
    assert env.model.sample(0, seed=0).shape == (0, 2)
    return "none: `log_prob` of shape `[0]`, `sample(0)` of shape `[0, D]`"


def _unfitted(env: Env, **options: Any) -> FlowModel:
    model = FlowModel(2, num_couplings=1, hidden_units=(4,), **options)
    model.compile(jit_compile=False)
    return model


def _fit_nan(env: Env) -> str:
    model = _unfitted(env, standardize=False)
    x = np.ones((8, 2), np.float32)
    x[3, 1] = np.nan
    message = _error(lambda: model.fit(x, epochs=1, verbose=0))
    assert all(np.isfinite(v.numpy()).all() for v in model.trainable_variables)  # no step ran
    return message


def _logit_at_one(env: Env) -> str:
    model = _unfitted(env, standardize=False, logit_alpha=0.05)
    return _error(lambda: model.fit(np.array([[0.0, 0.5], [1.0, 0.25]], np.float32), epochs=1, verbose=0))


def _truncated_keras(env: Env) -> str:
    data = env.keras_file.read_bytes()
    (env.work / "trunc.keras").write_bytes(data[: len(data) // 2])
    return _cli(env, "evaluate", "--model", "trunc.keras")


def _rewritten_keras(env: Env, name: str, change: Callable[[str, bytes], bytes]) -> str:
    """A copy of the model's `.keras` with each member passed through `change(name, content)`."""
    with zipfile.ZipFile(env.keras_file) as source, zipfile.ZipFile(env.work / name, "w") as target:
        for item in source.infolist():
            target.writestr(item, change(item.filename, source.read(item.filename)))
    return name


def _weights_cut_short(env: Env) -> str:
    name = _rewritten_keras(env, "badw.keras", lambda n, b: b[: len(b) // 3] if n.endswith(".h5") else b)
    return _cli(env, "evaluate", "--model", name, "--dataset", "two_moons")


def _alien_keras(env: Env) -> str:
    def change(name: str, content: bytes) -> bytes:
        if name != "config.json":
            return content
        config = json.loads(content)
        config.update(module="alien_pkg", class_name="AlienModel", registered_name="alien_pkg>AlienModel")
        return json.dumps(config).encode()

    return _cli(env, "evaluate", "--model", _rewritten_keras(env, "alien.keras", change), "--dataset", "two_moons")


def _other_saved_model(env: Env) -> pathlib.Path:
    path = env.work / "other" / "1"
    if not path.exists():
        module = tf.Module()
        module.f = tf.function(lambda x: {"y": 2.0 * x}, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return path


def _inspect_other(env: Env) -> str:
    _other_saved_model(env)
    out = io.StringIO()
    with contextlib.chdir(env.work), contextlib.redirect_stdout(out):
        assert cli.main(["inspect", "other"]) == 0
    assert re.search(r"^    x\s+float32\s+\[-1, 3\]$", out.getvalue(), re.M), out.getvalue()
    return "none: its signatures, as TF Serving sees them"


def _resume_without_settings(env: Env) -> str:
    (env.work / "started").mkdir(exist_ok=True)
    return _cli(env, "train", "--resume", "started")


def _output_with_backup(env: Env) -> str:
    (env.work / "interrupted" / "backup").mkdir(parents=True, exist_ok=True)
    return _cli(env, "train", "--output", "interrupted", "--epochs", "1", "--no-export")


def _corrupt_csv(env: Env) -> str:
    (env.work / "bad.csv").write_bytes(b"1,2\n\xff\xfe,3\n4,5\n")
    return _cli(env, "train", "--dataset", "csv:bad.csv", "--no-export", "--output", "out")


def _export_dir_file(env: Env) -> str:
    (env.work / "a_file").write_text("")
    return _cli(env, "export", "--model", "m.keras", "--export-dir", "a_file")


def _served_empty(env: Env) -> str:
    assert _served(env, "serving_default", {"x": np.zeros((0, 2), np.float32)})["log_prob"].shape == (0,)
    return "none: `log_prob` of shape `[0]`"


CATALOGUE: dict[str, Check | Asserted | Behaviour] = {
    # -- the Python API ----------------------------------------------------------------------
    "rows of another feature count": Asserted("test_model.py", "event size 3 does not match the model's 2"),
    "images of another shape": Asserted(
        "test_model.py", r"input of shape \(3, 4, 4, 2\) does not end in the model's event shape "),
    "strings": Check(lambda env: _error(lambda: env.model.log_prob(np.array([["a", "b"]])))),
    "integers, booleans, float64, lists": Check(_cast_inputs),
    "an empty batch": Check(_empty_batch),
    "a row with NaN or inf": Behaviour("test_export.py", "test_nan_row_gives_nan_log_prob_and_leaves_other_rows"),
    "training rows with NaN (no standardisation)": Check(_fit_nan),
    "training rows with NaN (standardised)": Asserted("test_model.py", "NaN or infinite"),
    "no training rows": Check(lambda env: _error(
        lambda: _unfitted(env).fit(np.zeros((0, 2), np.float32), epochs=1, verbose=0))),
    "no rows to adapt to": Check(lambda env: _error(lambda: _unfitted(env).adapt(np.zeros((0, 2))))),
    "training strings": Check(lambda env: _error(
        lambda: _unfitted(env, standardize=False).fit(np.array([["a", "b"]] * 4), epochs=1, verbose=0))),
    "integer data outside its levels": Asserted(
        "test_model.py", r"integer data must lie in \[0, 3\] .* got values in \[0.0, 7.0\]"),
    "logit data at 1 (pixels / 255)": Check(_logit_at_one),
    "`logit_alpha=0` with integer levels": Check(lambda env: _error(
        lambda: FlowModel(2, integer_levels=4, logit_alpha=0.0))),
    "a loss for `compile`": Asserted("test_model.py", "takes no loss; got loss='mse'"),
    "`num_bins` below 2 for a spline": Asserted("test_spline_coupling.py",
                                                r"num_bins must be an integer in \[2, 64\]; got 1"),
    "a spline `tail_bound` that is not a finite number > 0": Asserted(
        "test_spline_coupling.py", r"tail_bound must be a finite number > 0; got 0.0"),
    "a coupling mask that leaves nothing to transform": Asserted(
        "test_spline_coupling.py", r"mask must hold both True \(unchanged\) and False \(transformed\)"),
    "`permutation=\"lu\"` on an image event": Asserted(
        "test_mixing.py", r"permutation='lu' mixes the entries of a vector event \[D\]; got event "),
    "`mixing=\"1x1\"` on a vector event": Asserted(
        "test_mixing.py", r"mixing='1x1' is Glow's 1x1 convolution over the channels of an image "),
    "an unknown `transform`": Asserted("test_spline_coupling.py",
                                       r"transform must be one of 'affine', 'spline'; got 'flow'"),
    "`sample` without a seed": Check(lambda env: _error(lambda: env.model.sample(3, seed=None))),
    "`sample` of a negative count": Check(lambda env: _error(lambda: env.model.sample(-1, seed=0))),
    "`sample` at a negative or NaN temperature": Check(
        lambda env: _error(lambda: env.model.sample(3, seed=0, temperature=-1.0))),
    "no context for a conditional model": Asserted(
        "test_conditional.py", r"this model is conditional \(context_size=3\): pass context= of shape \[n, 3\]"),
    "a context of another width": Asserted(
        "test_conditional.py", r"context of shape \(4, 2\) does not fit the model's context_size 3"),
    "a context of another row count": Asserted(
        "test_conditional.py", r"context has 2 rows but the batch has 4; expected 4 rows, or 1 row"),
    "a context for an unconditional model": Asserted(
        "test_conditional.py", r"this model takes no context \(context_size=0\); got a context of shape "),
    "an export before the standardisation is fitted": Asserted(
        "test_export.py", r"standardisation has not been fitted: call model.fit\(x\)"),
    "an export version that exists": Asserted(
        "test_export.py", "version 3 already exists in .*; choose another version or leave version=None"),
    "a training setting out of range": Asserted("test_training.py", "epochs must be an integer >= 1; got 0"),
    "a `state.json` that is not a training backup": Asserted(
        "test_backup.py", r"state\.json is not a training backup; expected the state\.json of"),
    "integers into an `AffineCoupling`": Asserted("test_affine_coupling.py", r"expects a floating-point input; got dtype int32"),
    # -- data files ----------------------------------------------------------------------------
    "a missing file": Asserted("test_cli.py", r"no such file: missing\.csv$"),
    "a non-numeric cell": Asserted("test_cli.py", r"non-numeric cell at row 3, column 2 of letters\.csv: 'x' \(expected a number\)"),
    "NaN in a CSV": Asserted("test_cli.py", r"non-finite value at row 2, column 1 of nan\.csv: 'nan'"),
    "inf in an NPY": Asserted("test_cli.py", r"non-finite value at row 3, column 2 of inf\.npy"),
    "NaN deep in a streamed file": Asserted("test_cli.py", r"non-finite value at row 300, column 1 of big_nan\.csv: 'nan'"),
    "a corrupt CSV (bytes that are not text)": Check(_corrupt_csv),
    "a ragged row (a truncated last line)": Asserted(
        "test_data.py", r"row 2 of {path} has 2 values, expected 3 like the first data row"),
    "an empty file": Asserted("test_data.py", r"{path} is empty; expected rows of comma-separated numbers"),
    "a single row": Asserted("test_cli.py", r"one\.csv has 1 data row\(s\); needs at least 2 rows"),
    "a constant column (whitened: the csv default)": Asserted(
        "test_whitening.py", r"do not fit the flow: column\(s\) 3 \(every value 1.5\) are constant"),
    "a column copied as `a * other + b` (whitened)": Asserted(
        "test_whitening.py", r"columns 1 and 4 are copies of each other in the training rows"),
    "linearly dependent columns (whitened)": Asserted(
        "test_whitening.py", r"the columns are linearly dependent in the training rows"),
    "more columns than rows, whitening asked for": Asserted(
        "test_whitening.py", r"needs more training rows than columns .* got 10 rows and 12 columns"),
    "more columns than rows, the csv default": Behaviour(
        "test_whitening.py", "test_more_columns_than_rows_is_standardised_by_the_recipe"),
    "a single column": Asserted(
        "test_whitening.py", r"cannot build the flow: real_nvp is a flow over vectors: event_shape must be an integer >= 2"),
    "a truncated NPY": Asserted(
        "test_data.py", r"{path} is not a valid .npy file \(EOF: reading array header.*\); expected an array saved with np.save"),
    "an `.npz` for an `.npy`": Asserted("test_data.py", r"{path} is an .npz archive; expected a single"),
    "`to_levels` on a model of real values": Asserted(
        "test_cli.py", r"to_levels needs a model of integer data \(integer_levels\)"),
    "an unknown dataset": Asserted("test_cli.py", r"unknown dataset 'moons\.csv'.*did you mean 'csv:moons\.csv'"),
    "a misspelt dataset": Asserted("test_cli.py", "(did you mean 'two_moons'?)", regex=False),
    # -- the command line ----------------------------------------------------------------------
    "a malformed option": Asserted("test_cli.py", r"argument --hidden-units: expected comma-separated positive"),
    "a `--config` that is not JSON": Asserted(
        "test_training.py", "cannot read .*broken.json: .*expected a JSON training configuration"),
    "a `--config` with an unknown field": Asserted("test_cli.py", r"typo\.json: unknown configuration field\(s\) epoch;"),
    "an `--output` holding results": Asserted("test_cli.py", r"already holds results \(model\.keras, metrics\.json\)"),
    "an `--output` holding an interrupted run": Check(_output_with_backup),
    "`--resume` of a finished run": Asserted(
        "test_faults.py", "the run is finished (metrics.json is written); nothing to resume", regex=False),
    "`--resume` of a run that never began": Check(_resume_without_settings),
    "`--resume` with other options": Check(lambda env: _cli(env, "train", "--resume", "started", "--epochs", "3")),
    "`--resume` with a `--no-` option": Check(
        lambda env: _cli(env, "train", "--resume", "started", "--no-standardize")),
    "the image flow on vectors": Check(
        lambda env: _cli(env, "train", "--flow", "real_nvp_multiscale", "--epochs", "1", "--no-export")),
    "an `--event-shape` that does not hold a row": Check(
        lambda env: _cli(env, "train", "--dataset", "digits", "--event-shape", "8,4,1", "--epochs", "1", "--no-export")),
    "a `--model` that is not a zip": Asserted("test_cli.py", r"garbage\.keras is not a \.keras archive \(not a zip file\)"),
    "a truncated `.keras`": Check(_truncated_keras),
    "a `.keras` whose weights are cut short": Check(_weights_cut_short),
    "a `.keras` of another model": Asserted("test_cli.py", r"dense\.keras holds a Sequential, expected a tfp_realnvp FlowModel"),
    "a `.keras` of a class not installed": Check(_alien_keras),
    "a SavedModel for `--model`": Check(lambda env: (_other_saved_model(env), _cli(env, "evaluate", "--model", "other/1"))[1]),
    "`inspect` of a SavedModel from elsewhere": Check(_inspect_other),
    "`inspect` of a folder without one": Asserted("test_cli.py", r"holds no saved_model\.pb and no numbered version with one"),
    "`export --version` that exists": Asserted("test_cli.py", r"export version 1 already exists at .*1; expected a new version"),
    "an `--export-dir` that is a file": Check(_export_dir_file),
    "data of another feature count for `evaluate`": Asserted(
        "test_cli.py", r"three\.csv has 3 feature\(s\) per row but the model .* takes 2"),
    "a `sample --output` that exists": Asserted("test_cli.py", r"--output \.\./taken\.npy already exists; expected a new file"),
    "`sample --context` for an unconditional model": Check(
        lambda env: _cli(env, "sample", "--model", "m.keras", "--output", "s.npy", "--context", "1,0")),
    # -- the exported signatures (TensorFlow's C++ loader, as TF Serving runs them) --------------
    "a batch of another feature count": Asserted("test_export.py", r"is not compatible with expected shape \[\?,2\]"),
    "float64 or integer tensors for float32 inputs": Check(
        lambda env: _serving_error(env, "serving_default", {"x": X.astype(np.float64)})),
    "an empty request batch": Check(_served_empty),
    "NaN or inf in a request": Behaviour("test_export.py", "test_nan_row_gives_nan_log_prob_and_leaves_other_rows"),
    "logit data out of range in a request": Behaviour("test_export.py", "test_logit_out_of_range_gives_nan"),
    "`sample`'s scalars sent as rows": Asserted("test_export.py", r"\[1\] is not compatible with expected shape \[\]"),
    "a negative `num_samples`": Asserted("test_export.py", "num_samples must be >= 0"),
    "a negative or NaN `temperature`": Check(lambda env: _serving_error(
        env, "sample", {"num_samples": np.int32(2), "seed": np.int64(1), "temperature": np.float32(np.nan)})),
    "a request without the context": Asserted("test_conditional.py", r"input 'context' of signature 'serving_default' is not fed"),
    "a context of another row count in a request": Asserted(
        "test_conditional.py", r"assertion failed: \[context has\] \[2\] \[rows but the batch is\] \[4\]"),
    "an input the signature does not have": Check(lambda env: _serving_error(
        env, "serving_default", {"x": X, "y": np.zeros(2, np.float32)})),
    # -- ONNX and LiteRT exports (tests/test_export_runtimes.py), the integer signature, base folders --
    "an unknown export format": Asserted("test_export_runtimes.py", "invalid choice: 'pmml'", regex=False),
    "`--format onnx` or `litert` without its extra": Asserted("test_export_runtimes.py", "format needs", regex=False),
    "an existing folder for an ONNX or LiteRT export": Asserted(
        "test_export_runtimes.py", "already exists; not overwriting it", regex=False),
    "a float64 model for LiteRT": Asserted("test_export_runtimes.py", "LiteRT's kernels take float32", regex=False),
    "an artifact that disagrees with the SavedModel": Asserted("test_export_runtimes.py", "for input row 7 is",
                                                               regex=False),
    "non-integers or out-of-range values sent to `log_prob_integer`": Asserted(
        "test_export_runtimes.py", "hold other values", regex=False),
    "the same sent to an ONNX or LiteRT `log_prob_integer`": Behaviour(
        "test_export_runtimes.py", "test_integer_signature_gives_nan_for_rows_that_are_not_integers_in_range"),
    "a conditional model exported into an unconditional model's base folder": Asserted(
        "test_export.py", "export it to a base folder of its own", regex=False),
}


# -- the README's table ------------------------------------------------------------------------


def _rows() -> dict[str, tuple[str, str]]:
    """`{input: (where, error)}` from the README's table, backticks kept in the input, dropped in the error."""
    text = README.read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) != 3 or cells[0] in ("input", "---") or set(cells[0]) <= {"-"}:
            continue
        name, where, error = cells
        assert name not in rows, f"README row {name!r} appears twice"
        rows[name] = (where, error.replace("\\|", "|"))
    return rows


ROWS = _rows()


def _plain(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def _message(cell: str) -> str:
    """The error a row documents: its first code span (what follows is commentary), or the whole
    cell for a behaviour ("none: ...")."""
    if cell.startswith("none:"):
        return _plain(cell)
    match = re.match(r"`([^`]*)`", cell)
    assert match, f"an error cell starts with the message in backticks, or with 'none:'; got {cell!r}"
    return _plain(match.group(1))


def test_every_row_has_an_entry():
    assert len(ROWS) >= 60, f"the README's table has {len(ROWS)} rows"
    assert sorted(set(ROWS) - set(CATALOGUE)) == [], "README rows without a test"
    assert sorted(set(CATALOGUE) - set(ROWS)) == [], "tests without a README row"
    assert {where for where, _ in ROWS.values()} == set(WHERE)


@pytest.mark.parametrize("name", [n for n, e in CATALOGUE.items() if isinstance(e, Check)])
def test_the_check_gives_the_readme_error(name, env):
    where, documented = ROWS[name]
    actual = _plain(CATALOGUE[name].run(env))
    pattern = ".*".join(re.escape(part) for part in _message(documented).split("..."))
    assert re.match(pattern, actual), f"README: {documented!r}\nactual:  {actual!r}"


def _source(test_file: str) -> str:
    return (ROOT / "tests" / test_file).read_text()


@pytest.mark.parametrize("name", [n for n, e in CATALOGUE.items() if isinstance(e, Asserted)])
def test_the_asserting_test_matches_the_readme_error(name):
    entry, (_, documented) = CATALOGUE[name], ROWS[name]
    assert entry.pattern in _source(entry.test_file), f"{entry.test_file} no longer asserts {entry.pattern!r}"
    documented = _message(documented).replace("...", "")
    if entry.regex:
        assert re.search(entry.pattern.replace("{path}", r".+"), documented), (entry.pattern, documented)
    else:
        assert entry.pattern in documented, (entry.pattern, documented)


@pytest.mark.parametrize("name", [n for n, e in CATALOGUE.items() if isinstance(e, Behaviour)])
def test_the_behaviour_has_its_test(name):
    entry = CATALOGUE[name]
    tests = {node.name for node in ast.parse(_source(entry.test_file)).body if isinstance(node, ast.FunctionDef)}
    assert entry.test_name in tests, f"{entry.test_file} has no {entry.test_name}"
    assert ROWS[name][1].startswith("none:"), "a behaviour row says 'none: ...' (no error) and what happens"
