"""Throughput on a GPU, and the tests that matter there, in one command (issue 25, item 6).

Run from the repository root on a machine with a GPU (at most 8 minutes):

```none
python benchmarks/gpu.py                    # writes benchmarks/GPU.md and GPU.json (and $OUT/GPU.md, $OUT/gpu.json)
python benchmarks/gpu.py --allow-cpu --quick  # dry run without a GPU (~1-2 min on 2 cores); writes a temp file
python benchmarks/gpu.py --allow-cpu --quick --output /tmp/gpu.md   # the dry run's report where you say
```

Without a GPU visible to TensorFlow it refuses (one line, exit status 2) unless `--allow-cpu`
is given. `--allow-cpu` and `--quick` never write benchmarks/GPU.md: their figures are no GPU's.
Other options: `--deadline SECONDS` (default 450), `--no-tests`. Exit status 0, or 1 when a test
failed or timed out.

What it does, in this order:

1. Prints the device: `tf.config.list_physical_devices("GPU")`, each one's name and compute
   capability (`tf.config.experimental.get_device_details`), TensorFlow's CUDA/cuDNN build.
2. Runs the tests that matter on a GPU, each in a fresh `pytest` process (before this process
   touches the GPU, so the two never share its memory): the log-det and round-trip property
   tests (`tests/test_properties.py -k "round_trip or log_det"`: the round trip both ways,
   `fldj == -ildj`, the log-det against autodiff in float64; 3 properties x 8 families), and
   one export loaded in TensorFlow's C++ loader
   (`tests/test_export.py::test_c_loader_serving_default_matches_model_log_prob`: a SavedModel
   exported, its `serving_default` run through `TF_LoadSessionFromSavedModel` and compared with
   the model's `log_prob`). Pass/fail counts are taken from pytest's summary line.
3. Measures throughput (samples/s) for three models: speed.py's S (event 2, 8 couplings,
   conditioner 2x128) and L (event 64, 8 couplings, 2x256), built by `speed.ours`, and the 8x8x1
   image model (`FlowModel(event_shape=[8, 8, 1], flow="real_nvp_multiscale", ...)` with the
   digits recipe's settings for that flow, `TrainingConfig.for_dataset("digits",
   flow="real_nvp_multiscale")`: 2 scales, ResNet conditioners of 32 filters, 17 integer levels
   and a logit), at batch sizes 512, 2048 and 8192, each with `compile(jit_compile=False)` and
   `compile(jit_compile=True)` (the latter also compiles the eager `log_prob`/`sample` calls with
   XLA; the former runs them op by op):
   - training: `FlowModel.fit` over an in-memory array of 32 batches (`shuffle=False`, 16 steps
     per call, `compile()`'s default), as speed.py's `fit_contender` does it: a first `fit` on one
     batch (trace/compile; its seconds are the *ready* column), then epochs timed from
     `on_epoch_begin` to `on_epoch_end`, the first one a further warm-up, for about
     `--cell-seconds`; the best timed epoch is reported;
   - `log_prob` and `sample`: called eagerly, as a user calls them (`model.log_prob(x)`,
     `model.sample(n, seed=...)`), with `x` already on the device, each result fetched with
     `.numpy()` (speed.py's `call_contender`): one warm-up call, then calls for about half of
     `--cell-seconds` each.
4. Writes the tables, the device line, the date and the test results to the report (Markdown)
   and the raw figures to JSON beside it; with the environment variable `OUT` set, also to
   `$OUT/GPU.md` and `$OUT/gpu.json`. The report is rewritten after every cell, so a run that is
   killed still leaves what it measured.

A deadline bounds the whole run (`--deadline`, 450 s = 7.5 minutes by default): no
measurement starts that would end past it, and if a measurement in flight (an XLA compile, say)
holds on for 20 s past it, a watchdog writes what there is and ends the process (and any test
process it started).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUTPUT = HERE / "GPU.md"
MODELS = ("S", "L", "image")
IMAGE_RECIPE = ("digits", "real_nvp_multiscale")  # TrainingConfig.for_dataset(dataset, flow=...)
HARD_STOP_GRACE_S = 20.0  # a measurement in flight may run this long past the deadline
EXIT_REFUSED = 2


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much to measure: the GPU run or the dry run."""

    batches: tuple[int, ...]
    steps_per_epoch: int  # training batches per timed epoch (a multiple of the 16 steps per call)
    cell_s: float  # seconds of timing per cell: training about this, log_prob and sample half each
    property_filter: str  # pytest -k of tests/test_properties.py
    test_timeout_s: float  # per pytest process


FULL = Plan(batches=(512, 2048, 8192), steps_per_epoch=32, cell_s=3.0,
            property_filter="round_trip or log_det", test_timeout_s=180.0)
# The dry run: every code path, one small batch, one family's property tests.
QUICK = Plan(batches=(256,), steps_per_epoch=16, cell_s=0.3,
             property_filter="(round_trip or log_det) and affine_coupling", test_timeout_s=120.0)

EXPORT_TEST = "tests/test_export.py::test_c_loader_serving_default_matches_model_log_prob"


def pytest_command(*selection: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q", *selection]


# -- the run's state, written after every step -----------------------------------------------


class Run:
    """The results so far, the deadline, and the report written from them (by the main thread
    after each step, or by the watchdog when a step overruns the deadline)."""

    def __init__(self, args: argparse.Namespace, plan: Plan, outputs: list[tuple[Path, Path]]) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + args.deadline
        self.plan, self.outputs, self.lock = plan, outputs, threading.Lock()
        self.child: subprocess.Popen | None = None  # the test process running now, if any
        self.finished = False  # set under the lock at the end: the watchdog then does nothing
        self.results: dict[str, Any] = dict(
            command="python benchmarks/gpu.py" + "".join(f" {a}" for a in sys.argv[1:]),
            date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            quick=args.quick, cpu_only=None, device={}, software={}, plan=dataclasses.asdict(plan),
            deadline_s=args.deadline, tests=[], cells=[], skipped=[], stopped=None, elapsed_s=0.0,
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def log(self, text: str) -> None:
        print(f"[{self.elapsed():4.0f}s] {text}", file=sys.stderr, flush=True)

    def write(self) -> None:
        with self.lock:
            self._write_unlocked()

    def _write_unlocked(self) -> None:
        self.results["elapsed_s"] = round(self.elapsed(), 1)
        text = report(self.results) + "\n"
        raw = json.dumps(self.results, indent=1) + "\n"
        for path, json_path in self.outputs:
            for target, content in ((path, text), (json_path, raw)):
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.partial")
                partial.write_text(content)
                os.replace(partial, target)

    def start_watchdog(self) -> None:
        timer = threading.Timer(max(0.0, self.left() + HARD_STOP_GRACE_S), self._hard_stop)
        timer.daemon = True
        timer.start()

    def _hard_stop(self) -> None:
        with self.lock:  # a write in progress finishes first; none starts after this
            if self.finished:
                return
            self.results["stopped"] = (f"hard stop: a step was still running {HARD_STOP_GRACE_S:.0f} s after the "
                                       f"{self.results['deadline_s']:.0f} s deadline; its figures are missing")
            child = self.child
            if child is not None and child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)  # the test process this run started, and its children
            self._write_unlocked()
            print(f"gpu.py: {self.results['stopped']}; wrote {_paths(self.outputs)}", file=sys.stderr, flush=True)
            os._exit(0)


# -- the device ------------------------------------------------------------------------------


def describe_device(tf: Any) -> tuple[bool, dict[str, Any], str]:
    """`(has_gpu, details, line)` of the GPUs TensorFlow sees; nothing is allocated on them."""
    gpus = tf.config.list_physical_devices("GPU")
    build = tf.sysconfig.get_build_info()
    built = dict(cuda_build=bool(build.get("is_cuda_build")), cuda=build.get("cuda_version"),
                 cudnn=build.get("cudnn_version"))
    found = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        found.append(dict(device=gpu.name, name=details.get("device_name", "unknown GPU"),
                          compute_capability=".".join(map(str, capability)) if capability else None))
    cuda = (f"CUDA {built['cuda']}, cuDNN {built['cudnn']}" if built["cuda_build"]
            else "this TensorFlow is built without CUDA")
    if found:
        names = "; ".join(f"{g['device'].replace('/physical_device:', '')} {g['name']}"
                          + (f" (compute capability {g['compute_capability']})" if g["compute_capability"] else "")
                          for g in found)
        line = f"{names}; TensorFlow {tf.__version__} ({cuda})"
    else:
        line = f"no GPU: {_cpu_name()}, {_cores()} cores; TensorFlow {tf.__version__} ({cuda})"
    return bool(found), dict(gpus=found, **built, cpu=_cpu_name(), cores=_cores()), line


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# -- the tests -------------------------------------------------------------------------------


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")


def run_tests(run: Run) -> None:
    suites = [
        ("log-det and round-trip properties", pytest_command("tests/test_properties.py", "-k",
                                                             run.plan.property_filter)),
        ("an export in the C++ loader", pytest_command(EXPORT_TEST)),
    ]
    for name, command in suites:
        entry: dict[str, Any] = dict(name=name, command=_shell(command), passed=0, failed=0, errors=0, skipped=0,
                                     seconds=None, status="not run", failures=[], tail="")
        run.results["tests"].append(entry)
        # Leave the measurements at least a minute (the dry run: a quarter of the deadline).
        timeout = min(run.plan.test_timeout_s, run.left() - (15.0 if run.plan is QUICK else 60.0))
        if timeout < 10:
            entry["status"] = "skipped: too close to the deadline"
            run.write()
            continue
        run.log(f"tests: {name}: {entry['command']}")
        started = time.monotonic()
        # The package from this checkout; GPU memory taken as needed (this process holds none yet).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        run.child = process
        try:
            output, _ = process.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            timed_out = True
        run.child = None
        entry["seconds"] = round(time.monotonic() - started, 1)
        entry["tail"] = output[-3000:]
        entry["failures"] = [line.strip() for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
        summary = next((line for line in reversed(output.splitlines()) if _COUNT.search(line)), "")
        for count, word in _COUNT.findall(summary):
            key = {"error": "errors"}.get(word, word)
            if key in entry:
                entry[key] = int(count)
        if timed_out:
            entry["status"] = f"timed out after {timeout:.0f} s"
        elif process.returncode == 0 and entry["passed"]:
            entry["status"] = "passed"
        else:
            entry["status"] = f"FAILED (pytest exit status {process.returncode})"
        run.log(f"tests: {name}: {entry['status']}: {entry['passed']} passed, {entry['failed']} failed, "
                f"{entry['errors']} errors in {entry['seconds']} s")
        run.write()


def _shell(command: list[str]) -> str:
    return shlex.join(["python" if part == sys.executable else part for part in command])


def _paths(outputs: list[tuple[Path, Path]]) -> str:
    return ", ".join(f"{md} and {raw.name}" for md, raw in outputs)


# -- the models ------------------------------------------------------------------------------


def build(name: str, jit_compile: bool):
    """A compiled FlowModel: speed.py's S or L (`speed.ours`), or the digits image model."""
    import speed

    if name in speed.CONFIGS:
        return speed.ours(speed.CONFIGS[name], jit_compile=jit_compile)
    import keras

    from tfp_realnvp import FlowModel, TrainingConfig

    dataset, flow = IMAGE_RECIPE
    config = TrainingConfig.for_dataset(dataset, flow=flow)
    model = FlowModel(event_shape=config.event_shape, flow=config.flow, seed=0, standardize=config.standardize,
                      integer_levels=config.integer_levels, logit_alpha=config.logit_alpha, **config.flow_options)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clipnorm),
                  jit_compile=jit_compile)
    return model


def rows(name: str, count: int, seed: int = 0):
    """`count` examples for model `name`: speed.py's correlated Gaussian rows, or pixels 0..16."""
    import numpy as np
    import speed

    if name in speed.CONFIGS:
        return speed.data(speed.CONFIGS[name], count, seed=seed)
    from tfp_realnvp import TrainingConfig

    config = TrainingConfig.for_dataset(IMAGE_RECIPE[0], flow=IMAGE_RECIPE[1])
    levels = np.random.default_rng(seed).integers(0, config.integer_levels, size=(count, *config.event_shape))
    return levels.astype(np.float32)


def describe_model(name: str) -> str:
    import speed

    if name in speed.CONFIGS:
        c = speed.CONFIGS[name]
        width = (f"{len(c.hidden_units)}x{c.hidden_units[0]}" if len(set(c.hidden_units)) == 1
                 else " -> ".join(map(str, c.hidden_units)))
        return (f"{name}: event size {c.event_size}, {c.num_couplings} couplings, conditioner {width} "
                f"(speed.py's {name})")
    from tfp_realnvp import TrainingConfig

    config = TrainingConfig.for_dataset(IMAGE_RECIPE[0], flow=IMAGE_RECIPE[1])
    o = config.flow_options
    return (f"image: {'x'.join(map(str, config.event_shape))} `{config.flow}` with the digits recipe's options "
            f"({o['num_scales']} scales: {o['num_checkerboard_couplings']} checkerboard + "
            f"{o['num_channel_couplings']} channel couplings, then {o['num_final_couplings']} in the last; "
            f"ResNet conditioners of {o['num_blocks']} block x {o['num_filters']} filters; "
            f"{config.integer_levels} integer levels, logit alpha {config.logit_alpha})")


# -- the measurements ------------------------------------------------------------------------


def measure_all(run: Run, tf: Any) -> None:
    import speed

    plan = run.plan
    device = "/GPU:0" if not run.results["cpu_only"] else "/CPU:0"
    seed = tf.constant([7, 0], tf.int32)
    for name in MODELS:
        for jit in (False, True):
            label = f"{name} XLA {'on' if jit else 'off'}"
            if run.left() < 2 * plan.cell_s + 5:
                run.results["skipped"] += [dict(model=name, batch=b, xla=jit, why="deadline") for b in plan.batches]
                run.log(f"{label}: skipped, {run.left():.0f} s to the deadline")
                continue
            try:
                model = build(name, jit)
            except Exception as error:  # recorded, and the run goes on with the next model
                run.results["cells"] += [dict(model=name, batch=b, xla=jit, errors={"build": _short(error)})
                                         for b in plan.batches]
                run.log(f"{label}: build failed: {_short(error)}")
                run.write()
                continue
            for batch in plan.batches:
                if run.left() < 2 * plan.cell_s + 2:
                    run.results["skipped"].append(dict(model=name, batch=batch, xla=jit, why="deadline"))
                    run.log(f"{label} batch {batch}: skipped, {run.left():.0f} s to the deadline")
                    continue
                cell = dict(model=name, batch=batch, xla=jit, train=None, log_prob=None, sample=None,
                            ready_s=None, train_epoch_s=[], errors={}, seconds=None)
                run.results["cells"].append(cell)
                started = time.monotonic()
                measure_cell(run, speed, tf, model, name, batch, device, seed, cell)
                cell["seconds"] = round(time.monotonic() - started, 1)
                run.log(f"{label} batch {batch}: train {_rate(cell['train'])}, log_prob {_rate(cell['log_prob'])}, "
                        f"sample {_rate(cell['sample'])} samples/s (ready {cell['ready_s']} s; {cell['seconds']} s)"
                        + (f"; errors: {cell['errors']}" if cell["errors"] else ""))
                run.write()
            del model


def measure_cell(run: Run, speed: Any, tf: Any, model: Any, name: str, batch: int, device: str, seed: Any,
                 cell: dict) -> None:
    plan = run.plan
    try:  # training: speed.py's fit_contender, one epoch of steps_per_epoch batches per call
        x_train = rows(name, batch * plan.steps_per_epoch)
        epoch, first = speed.fit_contender(model, x_train, batch)
        cell["ready_s"] = round(first, 2)
        seconds: list[float] = []
        until = time.monotonic() + plan.cell_s
        while not seconds or (time.monotonic() < until and run.left() > plan.cell_s + 2):
            seconds.append(len(x_train) / epoch())  # the first epoch is a warm-up too
        cell["train_epoch_s"] = [round(s, 4) for s in seconds]
        timed = seconds[1:] or seconds
        cell["train"] = len(x_train) / min(timed)
        del x_train
    except Exception as error:
        cell["errors"]["train"] = _short(error)
    with tf.device(device):  # inputs already on the device, as a pipeline's would be
        x_eval = tf.identity(tf.constant(rows(name, batch, seed=1)))
    calls = {
        "log_prob": lambda: model.log_prob(x_eval),
        "sample": lambda: model.sample(batch, seed=seed),
    }
    for key, fn in calls.items():
        if run.left() < plan.cell_s / 2 + 2:
            cell["errors"][key] = "skipped: deadline"
            continue
        try:
            cell[key] = speed.call_contender(fn, batch, plan.cell_s / 2)()
        except Exception as error:
            cell["errors"][key] = _short(error)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


# -- the report ------------------------------------------------------------------------------


def _rate(rate: float | None) -> str:
    if rate is None or not math.isfinite(rate):
        return "n/a"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M"
    return f"{rate / 1e3:.1f}k"


def report(results: dict) -> str:
    plan, sw = results["plan"], results["software"]
    lines = ["# GPU: throughput and the GPU tests", ""]
    if results["cpu_only"] or results["quick"]:
        what = "on a CPU (`--allow-cpu`)" if results["cpu_only"] else "with `--quick`"
        lines += [(f"**A dry run {what}: these are not GPU figures, and the sizes are shrunk.** "
                   "The GPU page is written by `python benchmarks/gpu.py` on a GPU."), ""]
    lines += [
        f"Generated by `{results['command']}` on {results['date']}.",
        "",
        f"- Device: {results['device'].get('line', 'unknown')}.",
        (f"- Host: {results['device'].get('cpu', '?')}, {results['device'].get('cores', '?')} cores; "
         f"Python {platform.python_version()}; TFP {sw.get('tfp', '?')}, Keras {sw.get('keras', '?')}."),
        (f"- Wall time {results['elapsed_s']:.0f} s against a deadline of {results['deadline_s']:.0f} s"
         + (f"; **{results['stopped']}**" if results["stopped"] else "") + "."),
        "",
        ("Throughput in samples/s. *train*: `FlowModel.fit` over an in-memory array of "
        f"{plan['steps_per_epoch']} batches (16 steps per call), the best epoch of those timed in about "
        f"{plan['cell_s']:g} s after a first `fit` on one batch and one more epoch as warm-up; *ready*: that "
        "first `fit`'s seconds (trace and compile). *log_prob*, *sample*: eager calls as a user makes them "
        f"(`model.log_prob(x)` with `x` on the device, `model.sample(batch, seed=...)`), each result fetched "
        f"with `.numpy()`, for about {plan['cell_s'] / 2:g} s after a warm-up call. *XLA on*: "
        "`compile(jit_compile=True)`, the training step and the eager calls compiled with XLA (eager batches "
        "above 4096 rows run as chunks of 4096: `compiled.MAX_ROWS`); *off*: `compile(jit_compile=False)`, the "
        "step in TensorFlow's graph and the eager calls op by op."),
        "",
    ]
    for name in MODELS:
        cells = [c for c in results["cells"] if c["model"] == name]
        skipped = [s for s in results["skipped"] if s["model"] == name]
        lines += [f"## {results.get('models', {}).get(name, name)}", ""]
        if not cells and not skipped:
            lines += ["Not measured.", ""]
            continue
        lines += ["| batch | XLA | train | log_prob | sample | ready (s) |", "|---|---|---|---|---|---|"]
        for cell in sorted(cells, key=lambda c: (c["batch"], c["xla"])):
            lines.append(f"| {cell['batch']} | {'on' if cell['xla'] else 'off'} | {_rate(cell.get('train'))} | "
                         f"{_rate(cell.get('log_prob'))} | {_rate(cell.get('sample'))} | "
                         f"{'n/a' if cell.get('ready_s') is None else cell['ready_s']} |")
        for s in skipped:
            lines.append(f"| {s['batch']} | {'on' if s['xla'] else 'off'} | not measured ({s['why']}) | | | |")
        errors = [f"batch {c['batch']}, XLA {'on' if c['xla'] else 'off'}, {k}: {v}"
                  for c in cells for k, v in c.get("errors", {}).items()]
        lines += [""] + [f"- {e}" for e in errors] + ([""] if errors else [])
    lines += ["## Tests", ""]
    if not results["tests"]:
        lines += ["Not run.", ""]
    else:
        lines += ["| tests | passed | failed | errors | skipped | seconds | result |", "|---|---|---|---|---|---|---|"]
        for t in results["tests"]:
            lines.append(f"| {t['name']} | {t['passed']} | {t['failed']} | {t['errors']} | {t['skipped']} | "
                         f"{t['seconds'] if t['seconds'] is not None else 'n/a'} | {t['status']} |")
        lines.append("")
        for t in results["tests"]:
            lines.append(f"- {t['name']}: `{t['command']}`")
            lines += [f"  - {f}" for f in t["failures"]]
        lines.append("")
    return "\n".join(lines).rstrip()


# -- the command -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-cpu", action="store_true",
                        help="run without a GPU (a dry run); the report goes to --output, by default a temp file")
    parser.add_argument("--quick", action="store_true",
                        help="shrink every size and duration (one batch size, short timings, one family's "
                             "property tests): ~1-2 minutes on 2 CPU cores; writes a temp file unless --output")
    parser.add_argument("--output", type=Path, default=None,
                        help="the report (Markdown; the JSON goes beside it). Defaults to benchmarks/GPU.md on a "
                             "GPU run, to a temp file with --allow-cpu or --quick")
    parser.add_argument("--deadline", type=float, default=450.0,
                        help="seconds after which nothing more is measured (default 450 = 7.5 minutes)")
    parser.add_argument("--no-tests", action="store_true", help="measure only")
    args = parser.parse_args(argv)

    try:
        import tensorflow as tf
    except ImportError as error:
        print(f"gpu.py: cannot import TensorFlow ({error}); install the project with a CUDA build of TensorFlow "
              "(pip install -e .) and run again", file=sys.stderr)
        return EXIT_REFUSED
    has_gpu, device, line = describe_device(tf)
    print(f"device: {line}", flush=True)
    if not has_gpu and not args.allow_cpu:
        print("gpu.py: no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty); run on a GPU "
              "machine, or pass --allow-cpu for a dry run", file=sys.stderr)
        return EXIT_REFUSED

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    import keras
    import tensorflow_probability as tfp

    plan = QUICK if args.quick else FULL
    output = args.output
    if output is None:
        if args.allow_cpu or args.quick:
            output = Path(tempfile.mkdtemp(prefix="tfp_realnvp_gpu_")) / "GPU.md"
        else:
            output = DEFAULT_OUTPUT
    output = output.resolve()
    if (args.allow_cpu or args.quick) and output == DEFAULT_OUTPUT:
        print("gpu.py: a dry run (--allow-cpu or --quick) does not write benchmarks/GPU.md; give another --output",
              file=sys.stderr)
        return EXIT_REFUSED
    outputs = [(output, output.with_suffix(".json"))]
    if os.environ.get("OUT"):  # what the GPU machine copies back
        out = Path(os.environ["OUT"]).resolve()
        outputs.append((out / "GPU.md", out / "gpu.json"))
    print(f"report: {_paths(outputs)}" + ("" if output == DEFAULT_OUTPUT else " (not benchmarks/GPU.md)"),
          flush=True)

    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", module=r"(keras|tensorflow_probability)\.")
    run = Run(args, plan, outputs)
    run.results.update(cpu_only=not has_gpu, device=dict(line=line, **device),
                       software=dict(tensorflow=tf.__version__, tfp=tfp.__version__, keras=keras.__version__),
                       models={name: describe_model(name) for name in MODELS})
    run.write()
    run.start_watchdog()
    if not args.no_tests:
        run_tests(run)
    measure_all(run, tf)
    if run.results["skipped"] and not run.results["stopped"]:
        run.results["stopped"] = f"{len(run.results['skipped'])} cell(s) not measured: too close to the deadline"
    with run.lock:
        run.finished = True  # the watchdog, if it fires now, does nothing
        run._write_unlocked()
    print(report(run.results), flush=True)
    print(f"wrote {_paths(outputs)}", file=sys.stderr, flush=True)
    # Exit status 1 when a test failed or timed out (a test skipped for the deadline does not count).
    failed = [t for t in run.results["tests"] if t["status"] != "passed" and not t["status"].startswith("skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
