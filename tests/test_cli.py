"""The tfp-realnvp command line, run as a user runs it.

Every subprocess pays TensorFlow's import (about 8 s of CPU), so a command runs in a subprocess
where what is asserted needs one (the process's exit status and TensorFlow's log lines, the default
paths of a fresh process, the console script, the same samples from another process), and as
`cli.main` in this process otherwise: the same code path minus the import. Commands run in two
batches (`_run_all`: the subprocesses start first and run while this process does its part), each a
module fixture the tests assert on: what needs no trained model (the trainings, --help, bad input
end to end), then what uses the trained model (evaluate, sample, plot, a repeat).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from tfp_realnvp import cli
from tfp_realnvp.cli.parser import build_parser
from tfp_realnvp.training import RECIPES, TrainingConfig

# TensorFlow's C++ logging writes to stderr before any Python code can silence it: while
# `import tensorflow` runs ("Could not find cuda drivers" on a CPU-only machine), and for errors
# inside tf.data (a continuation line starts with a tab). Those lines are TensorFlow's, not the
# command's, whose own error report is the one line these tests check.
_TF_LOG = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"
    r"|To enable the following instructions: .*"
    r"|\t.*"
)
_MAX_PARALLEL = 6  # TF imports are CPU-bound: more processes than this only share the same cores
_TIMEOUT_S = 300


@dataclasses.dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def own_stderr(self) -> list[str]:
        """stderr without TensorFlow's C++ log lines."""
        return [line for line in self.stderr.splitlines() if line and not _TF_LOG.fullmatch(line)]

    def __str__(self) -> str:  # what a failed assertion shows
        return f"$ {shlex.join(self.args)}\nexit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _env(log_level: str | None = "2") -> dict[str, str]:
    """The environment of a command: this one's, with TF_CPP_MIN_LOG_LEVEL set to `log_level` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "COLUMNS": "100", **({"TF_CPP_MIN_LOG_LEVEL": log_level} if log_level is not None else {})}


def _run_here(args: list[str], cwd: pathlib.Path) -> Result:
    """`cli.main(args)` in this process, in `cwd`, its stdout and stderr captured."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
            status = cli.main(list(args))
    finally:
        os.chdir(old)
    return Result(["cli.main", *args], status, out.getvalue(), err.getvalue())


def _run_all(commands: dict[str, tuple], here: dict[str, tuple] | None = None) -> dict[str, Result]:
    """Runs `{name: (arguments, cwd[, env])}` as `python -m tfp_realnvp ARGS`, a few at a time, and
    meanwhile `here`'s `{name: (arguments, cwd)}` in this process (`_run_here`)."""
    pending = list(commands.items())
    running: dict[str, tuple[subprocess.Popen, list[str]]] = {}
    results: dict[str, Result] = {}
    deadline = time.monotonic() + _TIMEOUT_S
    here = dict(here or {})
    while pending or running or here:
        while pending and len(running) < _MAX_PARALLEL:
            name, (args, cwd, *env) = pending.pop(0)
            argv = [sys.executable, "-m", "tfp_realnvp", *args] if args[:1] != ["<script>"] else args[1:]
            running[name] = (
                subprocess.Popen(argv, cwd=cwd, env=env[0] if env else _env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True),
                argv,
            )
        while here:
            name, (args, cwd) = here.popitem()
            results[name] = _run_here(args, cwd)
        done = [name for name, (proc, _) in running.items() if proc.poll() is not None]
        if not done and running:
            if time.monotonic() > deadline:
                for proc, _ in running.values():
                    proc.kill()
                raise TimeoutError(f"commands still running after {_TIMEOUT_S} s: {sorted(running)}")
            time.sleep(0.2)
        for name in done:
            proc, argv = running.pop(name)
            stdout, stderr = proc.communicate()
            results[name] = Result(argv, proc.returncode, stdout, stderr)
    return results


def _snapshot(path: pathlib.Path) -> dict[str, tuple[str, int]]:
    """Every file and folder under `path`: a file's SHA-256 and mtime, a folder's name alone."""
    entries = [path] if path.is_file() else sorted(path.rglob("*"))
    return {
        str(p.relative_to(path.parent)):
            (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) if p.is_file() else ("dir", 0)
        for p in entries
    }


def _only_run_dir(cwd: pathlib.Path) -> pathlib.Path:
    (run_dir,) = (cwd / "runs").glob("two_moons-*")
    return run_dir


def _assert_one_line_error(returncode: int, stderr_lines: list[str], pattern: str, shown: object) -> None:
    assert returncode == 2, shown
    assert not any("Traceback" in line for line in stderr_lines), shown
    assert len(stderr_lines) == 1, shown
    assert stderr_lines[0].startswith("tfp-realnvp: error: "), shown
    assert re.search(pattern, stderr_lines[0]), f"{stderr_lines[0]!r} does not match {pattern!r}"


def _assert_subprocess_error(result: Result, pattern: str) -> None:
    _assert_one_line_error(result.returncode, result.own_stderr, pattern, result)


def _main(argv: list[str], capfd) -> tuple[int, str, list[str]]:
    """`cli.main(argv)` in this process: (exit status, stdout, stderr lines without TensorFlow's logs)."""
    capfd.readouterr()
    status = cli.main(argv)
    out, err = capfd.readouterr()
    return status, out, [line for line in err.splitlines() if line and not _TF_LOG.fullmatch(line)]


# --------------------------------------------------------------------------------------------------
# Batch 1: what needs no trained model: the trainings, --help, and bad input end to end.

_QUICK_FLOW = ["--couplings", "2", "--hidden-units", "16"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> pathlib.Path:
    work = tmp_path_factory.mktemp("cli")
    (work / "default").mkdir()
    user = np.random.default_rng(0).normal(size=(1500, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    np.savetxt(work / "user.csv", user, delimiter=",", fmt="%.6f", header="a,b,c", comments="")
    (work / "taken.npy").write_bytes(b"precious")
    return work


def _console_script() -> str | None:
    script = pathlib.Path(sys.executable).with_name("tfp-realnvp")
    return str(script) if script.exists() else shutil.which("tfp-realnvp")


@pytest.fixture(scope="module")
def first(work) -> dict[str, Result]:
    return _run_all({
        # The default paths (runs/two_moons-<time>, saved_models/two_moons/1), on a quick setting, with
        # TF_CPP_MIN_LOG_LEVEL unset, as a user runs it.
        "two_moons": (["train", "--epochs", "2", "--num-train", "2000", "--num-test", "500", *_QUICK_FLOW],
                      work / "default", _env(None)),
    }, here={
        "digits": (["train", "--dataset", "digits", "--epochs", "1", "--num-train", "200", "--num-test", "50",
                    *_QUICK_FLOW, "--no-export", "--output", "digits_run"], work),
        # The image model through the command line: the recipe's network, one short epoch, no XLA.
        "digits_image": (["train", "--dataset", "digits", "--flow", "real_nvp_multiscale", "--epochs", "1",
                          "--num-train", "200", "--num-test", "50", "--no-jit-compile", "--output", "image_run",
                          "--export-dir", "image_export"], work),
        # 45 kB > --stream-above 0.01 MiB: streamed from disk through tf.data.
        "csv": (["train", "--dataset", "csv:user.csv", "--stream-above", "0.01", "--epochs", "1",
                 "--couplings", "2", "--hidden-units", "8", "--no-export", "--output", "csv_run"], work),
    })


@pytest.mark.slow
def test_train_writes_the_run_directory_and_an_export(first, work):
    result = first["two_moons"]
    assert result.returncode == 0, result
    run_dir = _only_run_dir(work / "default")
    for name in ("model.keras", "settings.json", "metrics.json", "history.json", "density.png", "samples.png",
                 "loss.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (work / "default" / "saved_models" / "two_moons" / "1" / "saved_model.pb").is_file()
    # Progress, then the table.
    assert "Epoch 2/2" in result.stdout
    assert re.search(r"^train\s+1800\s+\d+\.\d{4}$", result.stdout, re.M), result
    assert re.search(r"^validation\s+200\s+\d+\.\d{4}$", result.stdout, re.M), result
    assert re.search(r"^test\s+500\s+\d+\.\d{4}$", result.stdout, re.M), result
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) >= {"train", "validation", "test", "epochs_run", "best_epoch", "export"}
    assert metrics["test"]["rows"] == 500 and np.isfinite(metrics["test"]["nll"])
    assert metrics["export"] == os.path.join("saved_models", "two_moons", "1")
    # Where the time went (benchmarks/cli_default.py reads it): every phase, none longer than the run.
    phases = metrics["seconds"]
    assert set(phases) == {"start", "fit_flow", "save", "plots", "export"}
    # Each figure is rounded to 0.01 s: five phases and the total can differ by 0.03 s that way.
    assert all(v >= 0 for v in phases.values()) and sum(phases.values()) <= metrics["total_seconds"] + 0.05
    assert phases["fit_flow"] >= metrics["training_seconds"]
    history = json.loads((run_dir / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == 2
    # While XLA compiles the first step, the command says so.
    assert "Compiling the training step into TensorFlow's graph" in result.stdout, result
    assert "Compiled; the first call" in result.stdout, result


@pytest.mark.slow
def test_a_run_prints_no_tensorflow_log_lines(first):
    # TF_CPP_MIN_LOG_LEVEL unset: absl's start-up lines (oneDNN, CUDA drivers, cuInit, CPU
    # features) and the XLA service banner are TensorFlow's, not the command's.
    result = first["two_moons"]
    assert result.returncode == 0, result
    assert not [line for line in result.stderr.splitlines() if _TF_LOG.fullmatch(line)], result.stderr


@pytest.mark.slow
def test_settings_are_the_runs_training_configuration(first, work):
    assert first["two_moons"].returncode == 0, first["two_moons"]
    run_dir = _only_run_dir(work / "default")
    config = TrainingConfig.from_file(run_dir / "settings.json")
    # Every hyper-parameter is spelled out, so a later change of the recipe does not change the run.
    assert (config.flow_options["num_couplings"], config.flow_options["hidden_units"]) == (2, [16])
    assert (config.epochs, config.num_train, config.num_test) == (2, 2000, 500)
    assert config.batch_size == RECIPES["two_moons"]["batch_size"]
    assert config.flow_options["permutation"] == RECIPES["two_moons"]["flow_options"]["permutation"]
    assert config.standardize is RECIPES["two_moons"]["standardize"]
    run = json.loads((run_dir / "run.json").read_text())
    words = shlex.split(run["command"])
    assert words == ["tfp-realnvp", "train", "--config", str((run_dir / "settings.json").resolve()),
                     "--export-dir", str(work / "default" / "saved_models" / "two_moons")]
    build_parser().parse_args(words[1:])  # a command the parser takes
    assert run["argv"][1:] == first["two_moons"].args[3:]
    assert run["data"]["num_fit"] == 1800 and run["versions"]["tensorflow"]


@pytest.mark.slow
def test_the_image_model_trains_reports_bits_per_dim_and_exports_images(first, work):
    result = first["digits_image"]
    assert result.returncode == 0, result
    assert "real_nvp_multiscale over events of shape [8, 8, 1]" in result.stdout, result
    assert re.search(r"^test\s+50\s+-?\d+\.\d{4}\s+\d+\.\d{4}$", result.stdout, re.M), result
    metrics = json.loads((work / "image_run" / "metrics.json").read_text())
    assert metrics["test"]["bits_per_dim"] == pytest.approx(metrics["test"]["nll"] / (64 * np.log(2)), rel=1e-5)
    assert (work / "image_run" / "samples.png").stat().st_size > 0
    # The export is the image model: its config holds the [8, 8, 1] event its signatures take (their
    # shapes through the C++ loader: tests/test_multiscale.py).
    config = json.loads((work / "image_export" / "1" / "assets.extra" / "flow_config.json").read_text())
    assert config["config"]["event_shape"] == [8, 8, 1] and config["config"]["flow"] == "real_nvp_multiscale", config


@pytest.mark.slow
def test_digits_are_reported_in_bits_per_dim(first, work):
    result = first["digits"]
    assert result.returncode == 0, result
    assert re.search(r"^split\s+rows\s+NLL \(nats\)\s+bits/dim$", result.stdout, re.M), result
    assert re.search(r"^test\s+50\s+\d+\.\d{4}\s+\d+\.\d{4}$", result.stdout, re.M), result
    metrics = json.loads((work / "digits_run" / "metrics.json").read_text())
    # Both figures are float32 means over the same batches, each rounded on its own: ~1e-6 relative.
    assert metrics["test"]["bits_per_dim"] == pytest.approx(metrics["test"]["nll"] / (64 * np.log(2)), rel=1e-5)
    assert (work / "digits_run" / "samples.png").is_file()
    assert not (work / "digits_run" / "density.png").exists()  # 64-D: no density map


@pytest.mark.slow
def test_user_csv_trains_streamed_from_disk(first, work):
    result = first["csv"]
    assert result.returncode == 0, result
    assert "streamed from disk" in result.stdout and "header row 1" in result.stdout
    metrics = json.loads((work / "csv_run" / "metrics.json").read_text())
    # 1500 rows: 300 test rows (every 5th), 1200 training rows of which 240 (every 5th) validate: the
    # table recipe validates 20% of tables under 2000 rows to fit, and says so in its line.
    assert (metrics["train"]["rows"], metrics["validation"]["rows"], metrics["test"]["rows"]) == (960, 240, 300)
    assert "Recipe    1200 rows x 3 columns (960 to fit): starts at the rows' full-covariance Gaussian" in result.stdout
    assert (work / "csv_run" / "samples.png").is_file()


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> tuple[pathlib.Path, dict[str, Result]]:
    cwd = tmp_path_factory.mktemp("plain")
    script = _console_script()
    missing = ["train", "--dataset", "csv:missing.csv", "--epochs", "1", "--output", "out"]
    probe = ("import sys; from tfp_realnvp.cli import main; "
             "codes = [main(['--help']), main(['train', '--help']), main(['train', '--epochs', '0']), "
             "main(['train', '--dataset', 'moons'])]; "
             "print('imported:', sorted(m for m in ('tensorflow', 'keras', 'numpy') if m in sys.modules), codes)")
    return cwd, _run_all({
        "help": (["--help"], cwd),
        "no_tensorflow": (["<script>", sys.executable, "-c", probe], cwd),
        # Through the console script when installed: the other entry point.
        "missing_file": ((["<script>", script] if script else []) + missing, cwd),
    })


def test_help_works_as_a_module(plain):
    result = plain[1]["help"]
    assert result.returncode == 0, result
    assert result.stdout.startswith("usage: tfp-realnvp ")
    for command in ("train", "evaluate", "sample", "export", "inspect", "plot"):
        assert re.search(rf"^    {command}\s+\S", result.stdout, re.M), result


def test_help_and_argument_errors_answer_without_importing_tensorflow(plain):
    # What makes them answer at once (benchmarks/cli_startup.py times them): no TensorFlow import.
    result = plain[1]["no_tensorflow"]
    assert result.returncode == 0, result
    assert result.stdout.rstrip().endswith("imported: [] [0, 0, 2, 2]"), result
    assert "argument --epochs: expected a positive integer" in result.stderr
    # An unknown dataset was reported after 17 s of importing TensorFlow; now by the parser, with the closest name.
    assert "argument --dataset: unknown dataset 'moons'; expected one of two_moons," in result.stderr
    assert "(did you mean 'two_moons'?)" in result.stderr


def test_a_missing_file_ends_the_process_with_one_line_and_status_2(plain):
    cwd, results = plain
    _assert_subprocess_error(results["missing_file"], r"no such file: missing\.csv$")
    assert not any(cwd.iterdir())


# --------------------------------------------------------------------------------------------------
# Batch 2: the commands that use the trained model.


@pytest.fixture(scope="module")
def model_path(first, work) -> pathlib.Path:
    assert first["two_moons"].returncode == 0, first["two_moons"]
    return _only_run_dir(work / "default") / "model.keras"


@pytest.fixture(scope="module")
def used(model_path, work) -> dict[str, Result]:
    cwd = work / "default"
    model = str(model_path)
    settings = str(model_path.parent / "settings.json")
    return _run_all({
        # TF_CPP_MIN_LOG_LEVEL set by the user: TensorFlow's lines come back.
        "evaluate": (["evaluate", "--model", model], cwd, _env("0")),
        "sample": (["sample", "--model", model, "-n", "50", "--seed", "7", "--output", "a.npy"], cwd),
    }, here={
        "repeat": (["train", "--config", settings, "--no-export", "--output", "repeat"], cwd),
        "plot": (["plot", "--model", model, "--output", "replot"], cwd),
    })


@pytest.mark.slow
def test_evaluate_reproduces_the_test_nll_of_the_run(used, work):
    result = used["evaluate"]
    assert result.returncode == 0, result
    metrics = json.loads((_only_run_dir(work / "default") / "metrics.json").read_text())
    (nll,) = re.findall(r"^test\s+500\s+(\d+\.\d{4})$", result.stdout, re.M)
    assert float(nll) == pytest.approx(metrics["test"]["nll"], abs=1e-4)  # the table's 4 decimals


@pytest.mark.slow
def test_a_user_who_sets_the_log_level_sees_tensorflows_lines(used):
    result = used["evaluate"]
    assert result.returncode == 0, result
    assert [line for line in result.stderr.splitlines() if _TF_LOG.fullmatch(line)], result.stderr


@pytest.mark.slow
def test_config_repeats_the_run_and_its_metrics(used, work):
    result = used["repeat"]
    assert result.returncode == 0, result
    first = json.loads((_only_run_dir(work / "default") / "metrics.json").read_text())
    again = json.loads((work / "default" / "repeat" / "metrics.json").read_text())
    assert json.loads((work / "default" / "repeat" / "settings.json").read_text()) == json.loads(
        (_only_run_dir(work / "default") / "settings.json").read_text())
    for split in ("train", "validation", "test"):
        assert again[split]["rows"] == first[split]["rows"]
        # Same seed, data, ops and thread count: repeats have been bit-identical here; 1e-6 leaves
        # room for float32 sums taken in another order.
        assert again[split]["nll"] == pytest.approx(first[split]["nll"], rel=1e-6), split


@pytest.mark.slow
def test_sample_is_reproducible_from_its_seed(used, work, model_path, capfd):
    cwd = work / "default"
    assert used["sample"].returncode == 0, used["sample"]
    assert "Wrote 50 samples of shape 2 to a.npy (seed 7, temperature 1)" in used["sample"].stdout
    samples = np.load(cwd / "a.npy")
    assert samples.shape == (50, 2) and np.all(np.isfinite(samples))
    # Another process, the same seed: the same bytes. As CSV: the same samples, each float32 read back exactly.
    sample = ["sample", "--model", str(model_path), "-n", "50", "--seed", "7", "--output"]
    assert _main([*sample, str(cwd / "b.npy")], capfd)[0] == 0
    assert (cwd / "b.npy").read_bytes() == (cwd / "a.npy").read_bytes()
    assert _main([*sample, str(cwd / "c.csv")], capfd)[0] == 0
    np.testing.assert_array_equal(np.loadtxt(cwd / "c.csv", delimiter=",", dtype=np.float32), samples)
    assert _main(["sample", "--model", str(model_path), "-n", "50", "--seed", "8", "--output",
                  str(cwd / "d.npy")], capfd)[0] == 0
    assert not np.array_equal(np.load(cwd / "d.npy"), samples)


@pytest.mark.slow
def test_plot_redraws_the_figures_with_the_runs_history(used, work):
    assert used["plot"].returncode == 0, used["plot"]
    for name in ("density.png", "samples.png", "loss.png"):
        assert (work / "default" / "replot" / name).stat().st_size > 0


@pytest.mark.slow
def test_sample_never_overwrites_its_output(model_path, work, capfd, monkeypatch):
    monkeypatch.chdir(work / "default")
    status, _, err = _main(["sample", "--model", str(model_path), "--output", "../taken.npy"], capfd)
    _assert_one_line_error(status, err, r"--output \.\./taken\.npy already exists; expected a new file", err)
    assert (work / "taken.npy").read_bytes() == b"precious"


@pytest.mark.slow
def test_export_adds_the_next_version_and_inspect_reads_it(model_path, work, capfd):
    base = work / "default" / "saved_models" / "two_moons"
    status, out, err = _main(["export", "--model", str(model_path), "--export-dir", str(base)], capfd)
    assert status == 0, err
    assert (base / "2" / "saved_model.pb").is_file()
    status, out, err = _main(["inspect", str(base)], capfd)  # a base directory: its highest version
    assert status == 0, err
    assert out.startswith(f"SavedModel {base / '2'} ")
    for key in ("serving_default", "log_prob", "sample", "forward", "inverse"):
        assert f"signature '{key}'" in out, out
    assert re.search(r"^    x\s+float32\s+\[-1, 2\]$", out, re.M), out
    assert re.search(r"^    log_prob\s+float32\s+\[-1\]$", out, re.M), out
    status, out, err = _main(["inspect", str(base / "1"), "--json"], capfd)
    assert status == 0, err
    num_samples = json.loads(out)["signatures"]["sample"]["inputs"]["num_samples"]
    assert (num_samples["dtype"], num_samples["shape"]) == ("int32", [])


@pytest.mark.slow
def test_export_refuses_an_existing_version(model_path, work, capfd):
    base = work / "default" / "saved_models" / "two_moons"
    before = _snapshot(base / "1")
    status, _, err = _main(["export", "--model", str(model_path), "--export-dir", str(base), "--version", "1"], capfd)
    _assert_one_line_error(status, err, r"export version 1 already exists at .*1; expected a new version", err)
    assert _snapshot(base / "1") == before


@pytest.mark.slow
def test_evaluate_and_plot_reject_data_with_another_feature_count(model_path, tmp_path, capfd):
    np.savetxt(tmp_path / "three.csv", np.ones((10, 3)), delimiter=",")
    spec = f"csv:{tmp_path / 'three.csv'}"
    for command in (["evaluate"], ["plot", "--output", str(tmp_path / "figures")]):
        status, _, err = _main([*command, "--model", str(model_path), "--dataset", spec], capfd)
        _assert_one_line_error(status, err, r"three\.csv has 3 feature\(s\) per row but the model .* takes 2", err)
    assert not (tmp_path / "figures").exists()


def test_a_model_file_that_is_not_a_flow_is_named(tmp_path, capfd):
    import keras

    (tmp_path / "garbage.keras").write_text("garbage")
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp_path / "dense.keras")
    for name, pattern in [("garbage.keras", r"garbage\.keras is not a \.keras archive \(not a zip file\)"),
                          ("dense.keras", r"dense\.keras holds a Sequential, expected a tfp_realnvp FlowModel")]:
        argv = ["sample", "--model", str(tmp_path / name), "--output", str(tmp_path / "s.npy")]
        status, _, err = _main(argv, capfd)
        _assert_one_line_error(status, err, pattern, err)
    assert not (tmp_path / "s.npy").exists()


def test_samples_of_integer_data_are_integer_levels(tmp_path, capfd):
    # `sample` from the digits model wrote values down to -0.733 where --help promised [0, levels).
    # A fresh flow is the identity: its draws are logistic(N(0, 1)) rescaled, and about 1 in 600
    # falls below 0 (the logit's alpha of 0.05 allows down to -0.89).
    from tfp_realnvp import FlowModel

    model = FlowModel(64, num_couplings=1, hidden_units=(4,), standardize=False, integer_levels=17, logit_alpha=0.05)
    model.compile(jit_compile=False)  # saved with the model: no XLA compilation of the sampler (seconds)
    model.save(tmp_path / "digits.keras")
    sample = ["sample", "--model", str(tmp_path / "digits.keras"), "-n", "100", "--output"]
    status, out, _ = _main([*sample, str(tmp_path / "levels.npy")], capfd)
    assert status == 0 and "Wrote 100 integer (levels 0 to 16) samples of shape 64" in out
    assert _main([*sample, str(tmp_path / "real.npy"), "--dequantized"], capfd)[0] == 0
    levels, real = np.load(tmp_path / "levels.npy"), np.load(tmp_path / "real.npy")
    assert real.min() < 0  # the flow's own draw leaves [0, 17) ...
    assert levels.dtype == np.int32 and levels.min() >= 0 and levels.max() <= 16  # ... the levels do not
    np.testing.assert_array_equal(levels, np.clip(np.floor(real), 0, 16))  # the level each value stands for
    assert "integers in [0, levels)" in build_parser()._subparsers._group_actions[0].choices["sample"].description
    with pytest.raises(ValueError, match=r"to_levels needs a model of integer data \(integer_levels\)"):
        FlowModel(2, num_couplings=1, hidden_units=(4,)).to_levels(real[:, :2])


def test_inspect_names_what_it_expected(tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    status, _, err = _main(["inspect", str(tmp_path / "empty")], capfd)
    _assert_one_line_error(status, err, r"holds no saved_model\.pb and no numbered version with one", err)
    status, _, err = _main(["inspect", str(tmp_path / "nowhere")], capfd)
    _assert_one_line_error(status, err, r"no such directory: .*nowhere", err)


# --------------------------------------------------------------------------------------------------
# Bad input, in this process: the checks that run before any training.

_QUICK = ["--epochs", "1", *_QUICK_FLOW, "--no-export"]  # should a check fail to stop a run, it stays short

# name: (arguments after `train`, the error line's pattern)
_BAD_TRAIN_INPUTS = {
    "non_numeric_cell": (["--dataset", "csv:letters.csv"],
                         r"non-numeric cell at row 3, column 2 of letters\.csv: 'x' \(expected a number\)"),
    "nan": (["--dataset", "csv:nan.csv"], r"non-finite value at row 2, column 1 of nan\.csv: 'nan'"),
    "infinity_npy": (["--dataset", "npy:inf.npy"], r"non-finite value at row 3, column 2 of inf\.npy"),
    "single_row": (["--dataset", "csv:one.csv"], r"one\.csv has 1 data row\(s\); needs at least 2 rows"),
    # Row 300 is a training row (not every 5th), and not a validation one (not every 10th of those).
    "nan_streamed": (["--dataset", "csv:big_nan.csv", "--stream-above", "0.01"],
                     r"non-finite value at row 300, column 1 of big_nan\.csv: 'nan'"),
    "unknown_dataset": (["--dataset", "moons.csv"], r"unknown dataset 'moons\.csv'.*did you mean 'csv:moons\.csv'"),
    "bad_option": (["--hidden-units", "0,5"], r"argument --hidden-units: expected comma-separated positive"),
    "no_validation_rows": (["--dataset", "csv:two.csv"], r"leaves 0 validation and 1 training rows"),
    "one_feature": (["--dataset", "csv:column.csv"],
                    r"cannot build the flow: real_nvp is a flow over vectors: event_shape must be an integer >= 2"),
    "event_shape_of_another_size": (["--event-shape", "3,1"],
                                    r"event_shape \[3, 1\] holds 3 entries but two_moons has 2 feature\(s\) per row"),
    "config_missing": (["--config", "nowhere.json"], r"no such configuration file: nowhere\.json"),
    "config_unknown_field": (["--config", "typo.json"], r"typo\.json: unknown configuration field\(s\) epoch;"),
    "output_is_a_file": (["--output", "a_file"], r"--output a_file is a file; expected a directory"),
}


@pytest.fixture
def bad_files(tmp_path, monkeypatch) -> pathlib.Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "letters.csv").write_text("a,b\n1,2\n3,x\n4,5\n")
    (tmp_path / "nan.csv").write_text("1,2\nnan,3\n4,5\n")
    np.save(tmp_path / "inf.npy", np.array([[1.0, 2.0], [3.0, 4.0], [5.0, np.inf], [6.0, 7.0]]))
    (tmp_path / "one.csv").write_text("1,2\n")
    (tmp_path / "two.csv").write_text("1,2\n3,4\n")
    (tmp_path / "column.csv").write_text("".join(f"{i}\n" for i in range(20)))
    (tmp_path / "a_file").write_text("precious")
    (tmp_path / "typo.json").write_text('{"epoch": 3}')
    big = np.random.default_rng(0).normal(size=(1000, 2))
    big[299, 0] = np.nan
    np.savetxt(tmp_path / "big_nan.csv", big, delimiter=",", fmt="%.6f")
    return tmp_path


@pytest.mark.parametrize("case", sorted(_BAD_TRAIN_INPUTS))
def test_bad_input_is_one_line_and_exit_status_2(bad_files, case, capfd):
    args, pattern = _BAD_TRAIN_INPUTS[case]
    argv = ["train", *args, *_QUICK] + ([] if "--output" in args else ["--output", "out"])
    before = _snapshot(bad_files)
    status, _, err = _main(argv, capfd)
    _assert_one_line_error(status, err, pattern, err)
    assert _snapshot(bad_files) == before  # nothing written, not even an empty run directory


def test_ctrl_c_during_training_says_how_to_resume(tmp_path, capfd, monkeypatch):
    # It printed only "tfp-realnvp: interrupted". The interrupt lands in the first training step,
    # after the run directory's settings are written, as a Ctrl-C would.
    import keras

    from tfp_realnvp import training

    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            raise KeyboardInterrupt

    real = training.fit_flow
    monkeypatch.setattr(training, "fit_flow", lambda config, **kw: real(
        config, **{**kw, "callbacks": [*kw["callbacks"], CtrlC()]}))
    run = tmp_path / "run"
    status, _, err = _main(["train", *_QUICK, "--output", str(run)], capfd)
    assert status == 130
    assert err[-1] == f"tfp-realnvp: interrupted; continue the run with 'tfp-realnvp train --resume {run}'", err
    assert (run / "settings.json").is_file() and not (run / "metrics.json").exists()  # what --resume needs


def test_an_output_holding_results_is_never_overwritten(tmp_path, capfd):
    (tmp_path / "model.keras").write_bytes(b"precious model")
    (tmp_path / "metrics.json").write_text('{"precious": true}')
    before = _snapshot(tmp_path)
    status, _, err = _main(["train", *_QUICK, "--output", str(tmp_path)], capfd)
    _assert_one_line_error(status, err, r"already holds results \(model\.keras, metrics\.json\)", err)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------------------
# The parser alone.


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "export", "inspect", "plot"])
def test_each_command_has_a_described_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tfp-realnvp {command}")
    description = out.split("\n\n")[1]
    assert len(description) > 60, description


def test_train_help_shows_the_recipes(capsys):
    cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for name in RECIPES:
        assert re.search(rf"^  {name}\s+real_nvp\s+\d+\s+[\d,]+", out, re.M), name
    assert "integer_levels 17, logit_alpha 0.05" in out
    # A flow a recipe has settings for: its own row, and its options (not real_nvp's) under the table.
    assert re.search(r"^  digits\s+real_nvp_multiscale\s+-\s+-\s+-\s+100\s+128", out, re.M), out
    note = " ".join(out.split("digits with --flow real_nvp_multiscale: ")[1].split("\n\n")[0].split())
    assert note.startswith("event shape 8,8,1; num_scales 2, num_filters 32,"), note


def test_another_flow_exports_to_a_base_directory_of_its_own():
    from tfp_realnvp.cli.commands import default_export_dir

    # TF Serving serves the highest version of a base directory: an image model (inputs [n, 8, 8, 1]) must not
    # become the next version of the vector model's saved_models/digits (inputs [n, 64]).
    assert default_export_dir(TrainingConfig.for_dataset("digits")) == os.path.join("saved_models", "digits")
    assert default_export_dir(TrainingConfig.for_dataset("digits", flow="real_nvp_multiscale")) == os.path.join(
        "saved_models", "digits_multiscale")
    assert default_export_dir(TrainingConfig.for_dataset("csv:runs/my data.csv")) == os.path.join(
        "saved_models", "my_data")


def test_recipes_cover_every_builtin_dataset():
    from tfp_realnvp.data import BUILTIN_DATASETS

    assert set(RECIPES) == set(BUILTIN_DATASETS) | {"file"}
    assert RECIPES["digits"]["integer_levels"] == 17


@pytest.mark.parametrize("argv, pattern", [
    (["train", "--epochs", "0"], r"argument --epochs: expected a positive integer, got '0'"),
    (["train", "--validation-split", "1"], r"argument --validation-split: expected a number in \[0, 1\)"),
    (["train", "--no-export", "--export-dir", "x"], r"--export-dir and --no-export contradict each other"),
    (["sample", "--model", "m.keras"], r"the following arguments are required: --output"),
    (["sample", "--model", "m.keras", "--output", "s.txt"], r"--output s\.txt must end in \.npy or \.csv"),
    (["evaluate", "--model", "nowhere.keras"], r"no such model file: nowhere\.keras"),
    (["frobnicate"], r"argument COMMAND: invalid choice: 'frobnicate'"),
    (["plot", "--model", "m.keras", "--output", "o", "--temperature", "1,0"],
     r"argument --temperature: expected comma-separated positive numbers such as 1,0\.7, got '1,0'"),
])
def test_usage_errors_are_one_line(argv, pattern, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tfp-realnvp: error: ") and re.search(pattern, err[0]), err
    assert not any(tmp_path.iterdir())
