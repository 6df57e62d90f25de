"""Faults injected into real processes: a training killed mid-run and resumed, exports killed at
every stage, two exports at once.

Every process pays TensorFlow's import (about 10 s of CPU), so all of them start together in one
module fixture (`faults`) and the tests assert on what they left. The kills are SIGKILL, which
no handler sees: what is on disk at that moment is all there is.

- Training: `train ... --verbose 2` is killed as soon as it prints `Epoch 3/5` (two epochs done
  and backed up, the third under way), then `train --resume RUN_DIR` finishes it, in this
  process (`cli.main`: the same code minus one more TensorFlow import); the uninterrupted run of
  the same settings is `fit_flow` in this process too.
- Exports: `export` is killed at three points (`_EXPORT_KILLS`): while Python starts, with the
  SavedModel half written, and right after the rename. A helper (`_PAUSING_EXPORT`) runs the
  command line with a pause at the point, prints `PAUSED` and waits to be killed there; the
  first point needs no pause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import small_fitted_model

from tfp_realnvp import cli, files, serving_check
from tfp_realnvp.data import load_dataset
from tfp_realnvp.training import TrainingConfig, fit_flow

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_TIMEOUT_S = 300
EPOCHS = 5
KILL_AT = f"Epoch 3/{EPOCHS}"  # printed when epoch 3 begins: epochs 1 and 2 are backed up
_TRAIN = ["train", "--num-train", "2000", "--num-test", "1000", "--epochs", str(EPOCHS), "--couplings", "2",
          "--hidden-units", "16", "--batch-size", "64", "--no-jit-compile", "--verbose", "2", "--no-export"]
# The test NLL of this setting over 6 seeds (weights and shuffling drawn anew) has a standard
# deviation of 0.022 nats; a resumed run draws anew only its remaining epochs' shuffling, which
# moves it less (and here has left it bit-identical): one such deviation.
RESUMED_NLL_ATOL = 0.022

# A pause where the point says, then a wait to be killed there; otherwise the command line as is.
_PAUSING_EXPORT = r"""
import pathlib, sys, time
from tfp_realnvp import cli, files

point, argv = sys.argv[1], sys.argv[2:]

def pause():
    print("PAUSED", flush=True)
    time.sleep(600)

if point == "half_written":  # the SavedModel is in the temporary folder, its flow_config.json not yet
    write_text = pathlib.Path.write_text
    def paused_write_text(self, *args, **kwargs):
        if self.name == "flow_config.json":
            pause()
        return write_text(self, *args, **kwargs)
    pathlib.Path.write_text = paused_write_text
elif point == "renamed":  # right after the rename, before the base directory is flushed
    fsync_dir = files._fsync_dir
    def paused_fsync_dir(path):
        fsync_dir(path)
        if not path.name.startswith(files.TEMP_PREFIX) and any(files.versions(path)):
            pause()
    files._fsync_dir = paused_fsync_dir
sys.exit(cli.main(argv))
"""
# point: (what the base directory must show afterwards)
_EXPORT_KILLS = {
    "starting": "nothing",  # killed 0.3 s after the start, importing
    "half_written": "a hidden .tmp-* folder",
    "renamed": "version 1, complete",
}


@dataclasses.dataclass
class Run:
    args: list[str]
    returncode: int | None = None
    output: str = ""
    killed_after: str | None = None  # the line that triggered the kill


def _env() -> dict[str, str]:
    # This checkout's package first: an installed tfp_realnvp (an editable install of another
    # checkout) would otherwise be the one the processes run.
    path = os.pathsep.join([str(_ROOT), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _start(argv: list[str], cwd: pathlib.Path, *, kill_on: str | None = None,
           kill_after_s: float | None = None) -> tuple[Run, threading.Thread]:
    """Runs `argv` in a thread; kills it (SIGKILL) at the first line starting with `kill_on`, or after
    `kill_after_s`."""
    run = Run(argv)

    def work() -> None:
        proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if kill_after_s is not None:
            time.sleep(kill_after_s)
            proc.send_signal(signal.SIGKILL)
            run.killed_after = f"{kill_after_s} s"
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if kill_on is not None and line.startswith(kill_on) and run.killed_after is None:
                proc.send_signal(signal.SIGKILL)
                run.killed_after = line.strip()
        run.returncode = proc.wait(timeout=_TIMEOUT_S)
        run.output = "".join(lines)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return run, thread


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfp_realnvp", *args]


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("faults")
    model = small_fitted_model()
    model.save(work / "model.keras")
    export = ["export", "--model", str(work / "model.keras"), "--export-dir"]
    started = {}
    started["killed"] = _start(_cli(*_TRAIN, "--output", str(work / "run")), work, kill_on=KILL_AT)
    for point in _EXPORT_KILLS:
        argv = [sys.executable, "-c", _PAUSING_EXPORT, point, *export, str(work / "killed_exports")]
        started[point] = _start(argv, work, **({"kill_after_s": 0.3} if point == "starting" else {"kill_on": "PAUSED"}))
    for k in (1, 2):
        started[f"concurrent_{k}"] = _start(_cli(*export, str(work / "concurrent")), work)
    # Meanwhile, the uninterrupted run of the same settings, here (fit_flow is what `train` runs).
    config = TrainingConfig.for_dataset("two_moons", num_train=2000, num_test=1000, epochs=EPOCHS, batch_size=64,
                                        jit_compile=False, flow_options={"num_couplings": 2, "hidden_units": [16]})
    reference = fit_flow(config, data=load_dataset("two_moons", num_train=2000, num_test=1000), verbose=0)
    results = {"work": work, "model": model, "reference": reference}
    for name, (run, thread) in started.items():
        thread.join(_TIMEOUT_S)
        assert not thread.is_alive(), f"{name} still running after {_TIMEOUT_S} s"
        results[name] = run
    resume = ["train", "--resume", str(work / "run"), "--verbose", "2"]
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        status = cli.main(resume)
    results["resumed"] = Run(resume, status, out.getvalue() + err.getvalue())
    return results


# -- training killed mid-run, then resumed -------------------------------------------------------


def _epochs_started(output: str) -> list[int]:
    return [int(n) for n in re.findall(rf"^Epoch (\d+)/{EPOCHS}$", output, re.M)]


@pytest.mark.slow
def test_a_killed_training_leaves_its_settings_and_a_backup(faults):
    killed = faults["killed"]
    assert killed.returncode == -signal.SIGKILL and killed.killed_after == KILL_AT, killed
    run_dir = faults["work"] / "run"
    assert faults["resumed"].returncode == 0, faults["resumed"]
    # What the kill left is gone now (the resumed run completed), but its files tell: the settings
    # are the ones the run started with.
    assert TrainingConfig.from_file(run_dir / "settings.json").epochs == EPOCHS


@pytest.mark.slow
def test_resume_loses_at_most_the_epoch_in_progress(faults):
    before = _epochs_started(faults["killed"].output)
    after = _epochs_started(faults["resumed"].output)
    assert before[-1] == 3 and "Resuming" in faults["resumed"].output, faults["resumed"]
    # Epoch 3 was under way: it runs again (or, finished just before the kill, the next does).
    assert after[0] in (3, 4) and after == list(range(after[0], EPOCHS + 1)), faults["resumed"]


@pytest.mark.slow
def test_the_resumed_run_has_the_whole_history_and_the_uninterrupted_metrics(faults):
    run_dir, reference = faults["work"] / "run", faults["reference"]
    history = json.loads((run_dir / "history.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(history["loss"]) == len(history["val_loss"]) == metrics["epochs_run"] == EPOCHS
    # The epochs before the kill ran exactly as in the uninterrupted run (same seed, same data, one
    # process): identical but for float32 summation order.
    np.testing.assert_allclose(history["loss"][:2], reference.history["loss"][:2], rtol=1e-6)
    assert metrics["test"]["nll"] == pytest.approx(reference.metrics["test"]["nll"], abs=RESUMED_NLL_ATOL)
    assert not (run_dir / "backup").exists()  # removed when the run completed
    for name in ("model.keras", "density.png", "loss.png"):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.slow
def test_a_finished_run_is_not_resumed(faults, capfd):
    run_dir = faults["work"] / "run"
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    capfd.readouterr()
    assert cli.main(["train", "--resume", str(run_dir)]) == 2
    assert "the run is finished (metrics.json is written); nothing to resume" in capfd.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


# -- exports killed at every stage; two at once ---------------------------------------------------


def _complete(version: pathlib.Path) -> bool:
    return all((version / name).is_file() for name in (
        "saved_model.pb", "variables/variables.index", "assets.extra/flow_config.json"))


@pytest.mark.slow
def test_each_export_was_killed_where_it_should_be(faults):
    for point in _EXPORT_KILLS:
        run = faults[point]
        assert run.returncode == -signal.SIGKILL, (point, run)
        assert run.killed_after == ("0.3 s" if point == "starting" else "PAUSED"), (point, run)


@pytest.mark.slow
def test_a_killed_export_leaves_no_version_that_tf_serving_would_load(faults):
    base = faults["work"] / "killed_exports"
    entries = sorted(p.name for p in base.iterdir())
    # TF Serving loads the folders named by integers: only the one renamed before its kill is.
    assert list(files.versions(base)) == [1] and _complete(base / "1"), entries
    # The half-written one stays hidden: a .tmp-* folder, which TF Serving skips (not an integer).
    hidden = [name for name in entries if name != "1"]
    assert len(hidden) == 1 and hidden[0].startswith(files.TEMP_PREFIX) and not _complete(base / hidden[0]), entries
    assert (base / hidden[0] / "saved_model.pb").is_file()  # killed mid-write indeed: the graph, not the rest
    x = np.array([[0.3, -0.2], [1.0, 2.0]], np.float32)
    served = serving_check.run_signature_c(base / "1", "serving_default", {"x": x})["log_prob"]
    np.testing.assert_allclose(served, faults["model"].log_prob(x), atol=1e-5)  # see test_export.ATOL32


@pytest.mark.slow
def test_the_next_export_is_not_confused_by_what_a_kill_left(faults):
    from tfp_realnvp.export import export_saved_model

    base = faults["work"] / "killed_exports"
    assert export_saved_model(faults["model"], base) == base / "2"


@pytest.mark.slow
def test_two_exports_at_once_take_distinct_versions_both_loadable(faults):
    for k in (1, 2):
        assert faults[f"concurrent_{k}"].returncode == 0, faults[f"concurrent_{k}"]
    base = faults["work"] / "concurrent"
    assert sorted(files.versions(base)) == [1, 2] and sorted(p.name for p in base.iterdir()) == ["1", "2"]
    said = {re.search(r"to (\S+)/", faults[f"concurrent_{k}"].output).group(1) for k in (1, 2)}
    assert said == {str(base / "1"), str(base / "2")}
    x = np.array([[0.3, -0.2], [1.0, 2.0]], np.float32)
    for version in ("1", "2"):
        served = serving_check.run_signature_c(base / version, "serving_default", {"x": x})["log_prob"]
        # The C++ session's float32 kernels round by an ulp or two of log p(x): see test_export.ATOL32.
        np.testing.assert_allclose(served, faults["model"].log_prob(x), atol=1e-5)
