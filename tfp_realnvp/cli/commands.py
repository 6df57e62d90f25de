"""The commands of `tfp-realnvp`: one function per command, taking the parsed arguments.

Each checks what it can without TensorFlow first (files that exist or not, options that
contradict), so those errors come at once, then imports TensorFlow quietly (`quiet.py`) and calls
the library: `training.fit_flow` for `train`, `export_saved_model`, `plots`, `data`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from tfp_realnvp import distribution, files
from tfp_realnvp.choices import FILE_KINDS
from tfp_realnvp.cli.parser import CONFIG_FIELDS, FLOW_OPTIONS, PROG
from tfp_realnvp.cli.quiet import import_tensorflow
from tfp_realnvp.files import write_new
from tfp_realnvp.training import TrainingConfig, recipe_for

__all__ = [
    "BACKUP_DIR",
    "CommandError",
    "HISTORY_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "RUN_FILE",
    "SETTINGS_FILE",
    "default_export_dir",
    "evaluate",
    "export",
    "inspect",
    "plot",
    "sample",
    "train",
    "training_config",
]

MODEL_FILE = "model.keras"
SETTINGS_FILE = "settings.json"  # the run's TrainingConfig
RUN_FILE = "run.json"  # how it ran: command, versions, data rows
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.json"
BACKUP_DIR = "backup"  # an unfinished run's training backup (tfp_realnvp.backup); removed when training ends
# `train` options that say where a run goes: --resume takes them from the run itself.
_RUN_OPTIONS = ("config", "dataset", "stream_above_mb", "output", "export_dir", "no_export")
_OWN_FILES = (MODEL_FILE, SETTINGS_FILE, RUN_FILE, METRICS_FILE, HISTORY_FILE)


class CommandError(Exception):
    """A problem with what the user gave; reported as one line and exit status 2."""


# --------------------------------------------------------------------------------------------------
# Shared helpers.


def _run_files() -> tuple[str, ...]:
    from tfp_realnvp.plots import PLOT_FILES  # pylint: disable=import-outside-toplevel

    return (*_OWN_FILES, *PLOT_FILES)


def _dataset_slug(spec: str) -> str:
    kind, sep, path = spec.partition(":")
    name = pathlib.Path(path.replace("*", "")).stem if sep and kind in FILE_KINDS else spec  # a glob: its stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"


def _absolute_spec(spec: str) -> str:
    """`csv:rel/path` -> `csv:/abs/rel/path`, so a saved setting works from any directory."""
    kind, sep, path = spec.partition(":")
    if sep and kind in FILE_KINDS and path:
        return f"{kind}:{os.path.abspath(os.path.expanduser(path))}"
    return spec


def _check_output_dir(path: str, names: Sequence[str], what: str) -> pathlib.Path:
    directory = pathlib.Path(path)
    if directory.exists() and not directory.is_dir():
        raise CommandError(f"--output {path} is a file; expected a directory for the {what}")
    found = [name for name in names if (directory / name).exists()] if directory.is_dir() else []
    if found:
        hint = f"; it holds an interrupted run: continue it with 'tfp-realnvp train --resume {path}'" \
            if BACKUP_DIR in found else ""
        raise CommandError(
            f"--output {path} already holds results ({', '.join(found)}); expected a new or empty "
            f"directory (nothing is overwritten){hint}"
        )
    return directory


def _new_run_dir(spec: str) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = pathlib.Path("runs") / f"{_dataset_slug(spec)}-{stamp}"
    candidate, k = base, 1
    while candidate.exists():  # two runs in the same second
        k += 1
        candidate = base.with_name(f"{base.name}-{k}")
    return candidate


def _write_json(path: pathlib.Path, value: Any) -> pathlib.Path:
    text = json.dumps(value, indent=2, default=_json_default) + "\n"
    return write_new(path, lambda p: p.write_text(text))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def _read_json(path: pathlib.Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read {path}: {error}; expected the JSON file written by 'train'") from None
    return value if isinstance(value, dict) else None


def _check_model_path(path: str) -> pathlib.Path:
    model_path = pathlib.Path(path)
    if not model_path.exists():
        raise CommandError(f"no such model file: {path} (expected a .keras file written by 'tfp-realnvp train')")
    if model_path.is_dir() or model_path.suffix != ".keras":
        raise CommandError(f"--model {path} is not a .keras file; expected the model.keras of a run")
    return model_path


def _load_model(model_path: pathlib.Path) -> Any:
    import zipfile  # pylint: disable=import-outside-toplevel

    if not zipfile.is_zipfile(model_path):
        raise CommandError(f"{model_path} is not a .keras archive (not a zip file); expected a model saved by "
                           "'tfp-realnvp train'")
    import_tensorflow()
    import keras  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.model import FlowModel  # pylint: disable=import-outside-toplevel  # registers the class

    try:
        model = keras.models.load_model(model_path, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # Keras's first sentence says what failed; the rest of its line can be the whole config.
        first = re.split(r"(?<=[.!]) (?=[A-Z])", first, maxsplit=1)[0].rstrip(".")
        raise CommandError(
            f"cannot load {model_path}: {first} (expected a model saved by 'tfp-realnvp train')"
        ) from None
    if not isinstance(model, FlowModel):
        raise CommandError(f"{model_path} holds a {type(model).__name__}, expected a tfp_realnvp FlowModel")
    model.compile()
    return model


def _load_data(config: TrainingConfig) -> Any:
    import_tensorflow()
    from tfp_realnvp.examples import load_data  # pylint: disable=import-outside-toplevel

    return load_data(config)


def _check_fits(config: TrainingConfig, data: Any, model: Any, model_path: pathlib.Path) -> None:
    """The data's features and context fit the model, or a CommandError that says how not."""
    from tfp_realnvp.examples import context_size, feature_count  # pylint: disable=import-outside-toplevel

    features = feature_count(config, data)
    if features != model.event_size:
        besides = " besides the context" if config.context_columns else ""
        raise CommandError(
            f"dataset {data.name} has {features} feature(s) per row{besides} but the model {model_path} takes "
            f"{model.event_size}; expected data like the model's training data"
        )
    given = context_size(config, data)
    if given == model.context_size:
        return
    if not given:
        raise CommandError(
            f"the model {model_path} is conditional (context_size {model.context_size}) and no context is given; "
            "expected --condition-on-label or --context-columns, as in its run (its settings.json says which)"
        )
    if not model.context_size:
        raise CommandError(f"the model {model_path} takes no context; expected no --context-columns or "
                           "--condition-on-label")
    raise CommandError(f"the context of {data.name} has {given} feature(s) but the model {model_path} takes "
                       f"{model.context_size}")


def _test_examples(config: TrainingConfig, data: Any, model: Any, limit: int | None = None) -> tuple[Any, Any]:
    """The test split as `(x [n, *event_shape], context or None)` (its first `limit` rows), checked
    against the model's preprocessing."""
    from tfp_realnvp.examples import Examples  # pylint: disable=import-outside-toplevel

    x, context = Examples(config, data).arrays("test", limit=limit)
    try:
        model.preprocessing.check(x)
    except ValueError as error:
        raise CommandError(f"test data of {data.name} do not fit the model: {error}") from None
    return x, context


def _table(results: dict[str, dict[str, Any]]) -> str:
    bits = any("bits_per_dim" in r for r in results.values())
    heads = ["split", "rows", "NLL (nats)"] + (["bits/dim"] if bits else [])
    rows = [heads]
    for split, r in results.items():
        row = [split, "" if r.get("rows") is None else str(r["rows"]), f"{r['nll']:.4f}"]
        if bits:
            row.append(f"{r['bits_per_dim']:.4f}" if "bits_per_dim" in r else "")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def _versions() -> dict[str, str]:
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_probability as tfp  # pylint: disable=import-outside-toplevel

    import tfp_realnvp  # pylint: disable=import-outside-toplevel

    return {"tfp_realnvp": tfp_realnvp.__version__, "tensorflow": tf.__version__,
            "tensorflow_probability": tfp.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def default_export_dir(config: TrainingConfig) -> str:
    """`saved_models/<dataset>`, `saved_models/<dataset>_<flow>` for a flow other than the recipe's, `_conditional` added
    for a conditional model.

    One TF Serving base directory holds versions of one model: an image model of digits (inputs
    `[n, 8, 8, 1]`) does not become the next version of the vector model's `saved_models/digits`
    (inputs `[n, 64]`), whose clients it would break. The flow's name drops a `real_nvp_` prefix:
    `saved_models/digits_multiscale`.
    """
    name = _dataset_slug(config.dataset)
    if config.flow != recipe_for(config.dataset)["flow"]:
        name += "_" + _dataset_slug(config.flow.removeprefix("real_nvp_"))
    if config.condition_on_label or config.context_columns:
        name += "_conditional"  # its signatures take a context: not the next version of the plain model
    return os.path.join("saved_models", name)


def _check_export_dir(path: str) -> None:
    base = pathlib.Path(path)
    if base.exists() and not base.is_dir():
        raise CommandError(f"--export-dir {path} is a file; expected a directory of SavedModel versions")


# --------------------------------------------------------------------------------------------------
# train


def _chief_task(config: TrainingConfig) -> bool:
    """Whether this process writes the run: TF_CONFIG's chief in a multi-worker job, else always."""
    if config.distribution != "multi_worker":
        return True
    return distribution.is_chief_task(distribution.read_tf_config())


def _workers(config: TrainingConfig) -> int:
    return distribution.worker_count(distribution.read_tf_config()) if config.distribution == "multi_worker" else 1


def _distribution_line(config: TrainingConfig, strategy: Any) -> str:
    """Where the run trains, for a distributed run ("" for one device)."""
    if strategy is None or config.distribution == "none":
        return ""
    replicas = strategy.num_replicas_in_sync
    if config.distribution == "mirrored":
        devices = ", ".join(d.rpartition("/device:")[2] for d in strategy.extended.worker_devices)
        return f"mirrored over {replicas} replica(s) ({devices}); each step splits the batch of {config.batch_size}"
    tf_config = distribution.read_tf_config()
    task = tf_config["task"]
    role = "the chief: it writes the run" if distribution.is_chief(strategy) else \
        "it trains beside the chief, which writes the run"
    return (f"multi_worker: {_workers(config)} workers, {replicas} replica(s) in all; this is {task['type']} "
            f"{task.get('index', 0)}, {role}; each step splits the batch of {config.batch_size}")


def _weights_digest(model: Any) -> str:
    """A short hash of the model's weights: equal on every worker of a job that trained in lockstep."""
    import hashlib  # pylint: disable=import-outside-toplevel

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()[:16]


def _worker_done(result: Any, strategy: Any) -> int:
    """A multi-worker job's other worker: the results it computed too, and nothing written."""
    print()
    print(f"Trained {result.epochs_run} epochs; best epoch {result.best_epoch}.")
    print()
    print(_table({"Gaussian (validation)" if k == "gaussian" else k: v for k, v in result.metrics.items()}))
    print()
    print(f"Weights   digest {_weights_digest(result.model)} (the chief's is the same: they trained in lockstep)")
    print("Written   nothing: the chief writes the run directory, the plots, the metrics and the export")
    return 0


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The run's configuration: `--config` (or the dataset's recipe), then the options given.

    Raises:
      ConfigError: For a configuration file that cannot be read or holds bad values.
    """
    if args.config is not None:
        config = TrainingConfig.from_file(args.config)
        if args.dataset is not None:
            config = config.replace(dataset=args.dataset)
    else:
        config = TrainingConfig.for_dataset(args.dataset or "two_moons", **({"flow": args.flow} if args.flow else {}))
    given = _context_choice({name: getattr(args, name) for name in (*CONFIG_FIELDS, "stream_above_mb")
                             if getattr(args, name) is not None})
    options = {name: getattr(args, name) for name in FLOW_OPTIONS if getattr(args, name) is not None}
    if options:
        given["flow_options"] = options
    return config.replace(**given)


def _context_choice(given: dict[str, Any]) -> dict[str, Any]:
    """The options given, where one way of conditioning given on the command line replaces the other."""
    if given.get("context_columns"):
        given["condition_on_label"] = False
    elif given.get("condition_on_label"):
        given["context_columns"] = None
    return given


def _run_start(config: TrainingConfig, data: Any, args: argparse.Namespace, run_dir: pathlib.Path,
               export_dir: str | None, written: list[pathlib.Path], *, resumed: bool = False,
               strategy: Any = None) -> Any:
    """A Keras callback that, when training starts (the data loaded and checked, the flow built),
    writes the run directory's settings.json and run.json and prints what is about to train.

    Nothing is written before: a run that fails on its data or its flow leaves no directory. A
    resumed run has both files already, and keeps them.
    """
    import keras  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.examples import split_sizes  # pylint: disable=import-outside-toplevel

    n_fit, n_val = split_sizes(data.num_train, config.validation_split, streamed=data.streamed)
    options = ", ".join(f"{k} {v}" for k, v in config.flow_options.items())
    training = (f"{n_fit} rows, {n_val} for validation; up to {config.epochs} epochs of batch {config.batch_size}, "
                f"Adam with cosine decay from {config.learning_rate:g}"
                + (f", weight decay {config.weight_decay:g} (AdamW)" if config.weight_decay else "")
                + (f", early stopping after {config.patience} epochs without progress" if config.patience > 0 else "")
                + (f", best of {config.restarts} restarts by training NLL" if config.restarts > 1 else ""))
    export_note = f", then export to {export_dir}/<next version>" if export_dir else ""
    where = _distribution_line(config, strategy)

    def write_run_files() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = run_dir / SETTINGS_FILE
        # A csv:/npy: path made absolute, so the settings repeat the run from any directory.
        written.append(write_new(settings, config.replace(dataset=_absolute_spec(config.dataset)).save))
        command = [PROG, "train", "--config", str(settings.resolve())]
        command += ["--export-dir", os.path.abspath(export_dir)] if export_dir else ["--no-export"]
        written.append(_write_json(run_dir / RUN_FILE, {
            "command": shlex.join(command),
            "argv": [PROG, *args.argv],
            "cwd": os.getcwd(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "output": str(run_dir),
            "export_dir": os.path.abspath(export_dir) if export_dir else None,  # --resume runs from anywhere
            "data": {"description": data.description, "event_size": data.event_size, "num_train": data.num_train,
                     "num_fit": n_fit, "num_validation": n_val, "num_test": data.num_test,
                     "streamed": data.streamed},
            "distribution": {"strategy": config.distribution,
                             "replicas": strategy.num_replicas_in_sync if strategy is not None else 1,
                             "workers": _workers(config)},
            "versions": _versions(),
        }))

    class RunStart(keras.callbacks.Callback):
        starts = 0

        def on_train_begin(self, logs: Any = None) -> None:
            RunStart.starts += 1
            if RunStart.starts > 1:
                print(f"Restart {RunStart.starts} of {config.restarts}", flush=True)
                return
            if not resumed and (strategy is None or distribution.is_chief(strategy)):
                write_run_files()
            print(f"Dataset   {data.description}")
            print(f"Flow      {config.flow} over events of shape {list(self.model.event_shape)}"
                  + (f": {options}" if options else "") + f"; {self.model.count_params():,} weights")
            if config.condition_on_label:
                print(f"Context   the one-hot class ({data.num_classes} classes): p(x | class)")
            elif config.context_columns:
                print(f"Context   columns {', '.join(map(str, config.context_columns))}: p(x | context)")
            print(f"Training  {training}")
            if where:
                print(f"Devices   {where}")
            print(f"Output    {run_dir}{export_note}", flush=True)

    return RunStart()


def _resumed_run(args: argparse.Namespace, run_files: Sequence[str]) -> tuple[TrainingConfig, pathlib.Path, str | None]:
    """`(config, run_dir, export_dir)` of the interrupted run `--resume` names, from its own files.

    The files the interrupted process wrote after its training (model.keras, history.json, plots)
    are the unfinished run's, and are removed; a run with metrics.json, its last file, is finished
    and refused.
    """
    run_dir = pathlib.Path(args.resume)
    # Given at all: --no-standardize and the like set False; only --no-export defaults to it.
    given = [name for name in (*CONFIG_FIELDS, *FLOW_OPTIONS, *_RUN_OPTIONS)
             if getattr(args, name, None) is not None and not (name == "no_export" and not args.no_export)]
    others = sorted(f"--{'no-' * (getattr(args, name) is False and name != 'no_export')}{name.replace('_', '-')}"
                    for name in given)
    if others:
        raise CommandError(f"--resume continues a run with its own settings ({run_dir / SETTINGS_FILE}); expected no "
                           f"other option than --verbose, got {', '.join(others)}")
    if not run_dir.is_dir():
        raise CommandError(f"--resume {args.resume}: no such run directory; expected the directory of an "
                           "interrupted 'tfp-realnvp train' (runs/<dataset>-<time>)")
    if (run_dir / METRICS_FILE).exists():
        raise CommandError(f"--resume {args.resume}: the run is finished ({METRICS_FILE} is written); nothing to "
                           "resume, and its results are not overwritten")
    if not (run_dir / SETTINGS_FILE).is_file():
        raise CommandError(f"--resume {args.resume} holds no {SETTINGS_FILE}; expected the directory of an "
                           "interrupted 'tfp-realnvp train' (a run killed before its training began left "
                           "nothing to resume: start it again)")
    config = TrainingConfig.from_file(run_dir / SETTINGS_FILE)
    run = _read_json(run_dir / RUN_FILE)
    # No run.json: killed between its two first files; the export goes where the run would send it.
    export_dir = run.get("export_dir") if run is not None else default_export_dir(config)
    if export_dir is not None and run is not None and run.get("cwd"):
        export_dir = os.path.join(run["cwd"], export_dir)  # absolute stays absolute; relative: to the run's cwd
    if export_dir is not None:
        _check_export_dir(export_dir)
    if not _chief_task(config):  # the chief tidies the run directory; this worker only reads its backup
        return config, run_dir, export_dir
    for name in run_files:
        if name not in (SETTINGS_FILE, RUN_FILE):
            (run_dir / name).unlink(missing_ok=True)
    for partial in run_dir.glob(".*.partial*"):  # write_new's temporary files, left by the kill
        partial.unlink(missing_ok=True)
    return config, run_dir, export_dir


def train(args: argparse.Namespace) -> int:
    started = time.time()
    run_files = _run_files()
    resumed = args.resume is not None
    if resumed:
        config, run_dir, export_dir = _resumed_run(args, run_files)
    else:
        config = training_config(args)
        # Cheap checks first: nothing below this block may fail on what the user typed after minutes of training.
        _chief_task(config)  # TF_CONFIG checked before TensorFlow starts
        if config.distribution == "multi_worker" and args.output is None:
            raise CommandError("--distribution multi_worker needs --output DIR: the run directory every worker "
                               "shares (on a shared file system), where the chief writes the run and its backup")
        # Every worker checks the directory (reading only: the chief writes nothing before the workers'
        # first collective step), so a job whose chief refuses it ends on every worker instead of hanging.
        run_dir = (_check_output_dir(args.output, (*run_files, BACKUP_DIR), "run's results")
                   if args.output is not None else _new_run_dir(config.dataset))
        export_dir = None
        if not args.no_export:
            export_dir = args.export_dir or default_export_dir(config)
            _check_export_dir(export_dir)
        elif args.export_dir:
            raise CommandError("--export-dir and --no-export contradict each other; give one of them")
    if args.replicas is not None and config.distribution != "mirrored":
        raise CommandError(f"--replicas applies to --distribution mirrored; the run's distribution is "
                           f"{config.distribution!r}")

    import_tensorflow()
    # Before TensorFlow runs anything: a multi-worker job's collectives, a mirrored run's logical CPUs.
    strategy = distribution.strategy(config.distribution,
                                     replicas=args.replicas if config.distribution == "mirrored" else None)
    chief = distribution.is_chief(strategy)
    from tfp_realnvp import plots  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.export import export_saved_model  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.training import fit_flow  # pylint: disable=import-outside-toplevel

    data = _load_data(config)
    if config.adapt_to_table:  # your own table: the recipe's sizes chosen from its rows and columns
        from tfp_realnvp.table_recipe import adapt_to_table  # pylint: disable=import-outside-toplevel

        config, why = adapt_to_table(config, data)
        print(why, flush=True)
    written: list[pathlib.Path] = []
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    if resumed:
        backup = "from its backup" if (run_dir / BACKUP_DIR).is_dir() else \
            "from the start (no backup: it was killed before its first epoch ended, or after its training)"
        print(f"Resuming  {run_dir} {backup}", flush=True)
    seconds = {"start": time.time() - started}  # where the run's time goes (benchmarks/CLI_DEFAULT.md)
    lap = time.time()
    try:
        result = fit_flow(config, data=data, verbose=verbose, backup_dir=run_dir / BACKUP_DIR,
                          callbacks=[_run_start(config, data, args, run_dir, export_dir, written, resumed=resumed,
                                                strategy=strategy)])
    except KeyboardInterrupt as interrupt:
        if (run_dir / SETTINGS_FILE).is_file():  # training began: its backup holds the finished epochs
            interrupt.resume = f"{PROG} train --resume {shlex.quote(str(run_dir))}"  # type: ignore[attr-defined]
        raise
    seconds["fit_flow"], lap = time.time() - lap, time.time()
    model = result.model
    if not chief:
        return _worker_done(result, strategy)
    written += [write_new(run_dir / MODEL_FILE, model.save), _write_json(run_dir / HISTORY_FILE, result.history)]
    x, context = _test_examples(config, data, model, limit=5000)
    seconds["save"], lap = time.time() - lap, time.time()
    written += plots.plot_run(model, run_dir, data=x, context=context, history=result.history, seed=config.seed,
                              title=_dataset_slug(data.name))
    seconds["plots"], lap = time.time() - lap, time.time()
    exported = pathlib.Path(export_saved_model(model, export_dir)) if export_dir else None
    seconds["export"] = time.time() - lap
    written.append(_write_json(run_dir / METRICS_FILE, {
        "dataset": _absolute_spec(config.dataset),
        **result.metrics,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "restarts": result.candidates if config.restarts > 1 else None,
        "training_seconds": round(result.training_seconds, 2),
        "total_seconds": round(time.time() - started, 2),
        # start: reading the arguments, importing TensorFlow, loading the data; fit_flow: building the
        # flow, training (training_seconds) and the final evaluation; save: model.keras and history.
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "export": str(exported) if exported else None,
    }))

    best = result.best_epoch
    restored = " (best weights restored)" if config.patience > 0 and best not in (None, result.epochs_run) else ""
    stop = "stopped early" if result.stopped_early else "all epochs"
    print()
    print(f"Trained {result.epochs_run} epochs ({stop}) in {result.training_seconds:.1f} s; best epoch {best}"
          f"{restored}.")
    if config.restarts > 1:
        print("Restarts  training NLL " + " / ".join(f"{c['train_nll']:.4f}" for c in result.candidates)
              + "; kept the lowest")
    print()
    # The Gaussian's validation NLL (your own data): what the flow bought over the one-line baseline.
    print(_table({"Gaussian (validation)" if k == "gaussian" else k: v for k, v in result.metrics.items()}))
    print()
    if config.distribution == "multi_worker":
        print(f"Weights   digest {_weights_digest(model)} (every worker's is the same: they trained in lockstep)")
        print()
    print(f"Run directory  {run_dir}/")
    print("  " + "  ".join(p.name for p in sorted(written, key=lambda p: run_files.index(p.name))))
    if exported is not None:
        print(f"SavedModel     {exported}/  (tfp-realnvp inspect {exported})")
    return 0


# --------------------------------------------------------------------------------------------------
# evaluate, sample, export, inspect, plot


def _data_for_model(args: argparse.Namespace, model_path: pathlib.Path, model: Any, *,
                    required: bool) -> tuple[TrainingConfig | None, Any]:
    """The data to evaluate or plot a model on: `(config, data)`, or `(None, None)` when there are none.

    Without --dataset, the run's settings.json beside the model gives the dataset and how its rows
    become examples (seed, header, test rows, stream threshold, context); options given on the
    command line win.
    """
    from tfp_realnvp.training import ConfigError  # pylint: disable=import-outside-toplevel

    config = None
    settings = model_path.parent / SETTINGS_FILE
    if args.dataset is None and settings.is_file():
        try:
            config = TrainingConfig.from_file(settings)
        except ConfigError:  # a run of tfp_realnvp before training configurations
            old = (_read_json(settings) or {}).get("dataset")
            if isinstance(old, dict) and old.get("spec"):
                config = TrainingConfig(dataset=old["spec"], seed=old.get("seed") or 0, header=old.get("header"),
                                        num_test=old.get("num_test"))
    if config is None:
        if args.dataset is None:
            if required:
                raise CommandError(
                    f"no --dataset given and no {SETTINGS_FILE} beside {model_path} names one; expected "
                    "--dataset NAME, csv:PATH or npy:PATH"
                )
            return None, None
        config = TrainingConfig(dataset=args.dataset)
    given = _context_choice({name: getattr(args, name) for name in ("num_test", "header", "seed", "stream_above_mb",
                                                                    "feature_key", "context_columns",
                                                                    "condition_on_label")
                             if getattr(args, name, None) is not None})
    config = config.replace(num_train=None, event_shape=list(model.event_shape) if len(model.event_shape) > 1 else None,
                            **given)
    data = _load_data(config)
    _check_fits(config, data, model, model_path)
    return config, data


def evaluate(args: argparse.Namespace) -> int:
    model_path = _check_model_path(args.model)
    model = _load_model(model_path)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.data import stream_error  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.examples import Examples  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.training import evaluate as evaluate_model  # pylint: disable=import-outside-toplevel

    config, data = _data_for_model(args, model_path, model, required=True)
    if not data.streamed:  # streamed rows are checked as they are read
        _test_examples(config, data, model)
    try:
        metrics = evaluate_model(model, Examples(config, data).pipeline("test"), data.num_test)
    except tf.errors.InvalidArgumentError as error:
        if not data.streamed:
            raise
        raise stream_error(error) from None
    print(f"Model    {model_path}")
    print(f"Dataset  {data.description}")
    print()
    print(_table({"test": metrics}))
    return 0


def _sample_context(args: argparse.Namespace, model: Any, model_path: pathlib.Path) -> tuple[Any, int]:
    """The context rows `sample` was given (`[1, C]` or `[n, C]`, or None) and the number of samples."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    context = None
    if args.context is not None:
        context = np.array([args.context], np.float64)
    elif args.context_file is not None:
        path = pathlib.Path(args.context_file)
        if not path.is_file():
            raise CommandError(f"no such context file: {args.context_file} (expected .npy or .csv rows of context)")
        try:
            context = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",", ndmin=2)
        except ValueError as error:
            raise CommandError(f"cannot read {args.context_file}: {error}; expected rows of numbers") from None
        context = np.asarray(context, np.float64).reshape(len(context), -1)
    elif args.label is not None and model.context_size:
        settings = _read_json(model_path.parent / SETTINGS_FILE) or {}
        if settings.get("context_columns"):
            raise CommandError(f"--label is for a model conditioned on class labels; {model_path} is conditioned on "
                               "columns: give --context or --context-file")
        if args.label >= max(model.context_size, 1):
            raise CommandError(f"--label {args.label} is not a class of the model {model_path}: it takes "
                               f"{model.context_size} classes, 0..{model.context_size - 1}")
        context = np.eye(model.context_size)[[args.label]]
    if (context is not None or args.label is not None) and not model.context_size:
        raise CommandError(f"the model {model_path} takes no context; expected no --context, --context-file or "
                           "--label")
    if context is None and model.context_size:
        raise CommandError(f"the model {model_path} is conditional (context_size {model.context_size}); expected "
                           "--context V,V,..., --context-file PATH or (for class labels) --label K")
    if context is not None and context.shape[1] != model.context_size:
        raise CommandError(f"the context has {context.shape[1]} value(s) per row but the model {model_path} takes "
                           f"{model.context_size}")
    rows = len(context) if context is not None else None
    num_samples = args.num_samples or (rows if args.context_file else 1000)
    if rows not in (None, 1, num_samples):
        raise CommandError(f"--context-file has {rows} rows for {num_samples} samples; expected one row per sample, "
                           "or 1 row for all")
    return context, num_samples


def sample(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.output)
    if out.suffix not in (".npy", ".csv"):
        raise CommandError(f"--output {args.output} must end in .npy or .csv")
    if out.exists():
        raise CommandError(f"--output {args.output} already exists; expected a new file (nothing is overwritten)")
    if not out.parent.is_dir():
        raise CommandError(f"--output {args.output}: directory {out.parent} does not exist")
    model_path = _check_model_path(args.model)
    model = _load_model(model_path)
    import numpy as np  # pylint: disable=import-outside-toplevel

    context, num_samples = _sample_context(args, model, model_path)
    samples = np.asarray(model.sample(num_samples, seed=args.seed, temperature=args.temperature, context=context))
    levels = model.get_config()["integer_levels"]
    if levels is not None and not args.dequantized:
        samples = model.to_levels(samples)
    if out.suffix == ".npy":
        write_new(out, lambda p: np.save(p, samples))
    else:  # %.9g: float32 values read back exactly; one flattened example per row
        write_new(out, lambda p: np.savetxt(p, samples.reshape(len(samples), -1), delimiter=",",
                                            fmt="%d" if samples.dtype.kind == "i" else "%.9g"))
    shape = "x".join(map(str, samples.shape[1:]))
    given = "" if context is None else (f", label {args.label}" if args.label is not None else
                                        f", {len(context)} context row(s)")
    kind = "" if levels is None else (" dequantized" if args.dequantized else f" integer (levels 0 to {levels - 1})")
    print(f"Wrote {len(samples)}{kind} samples of shape {shape} to {out} "
          f"(seed {args.seed}, temperature {args.temperature:g}{given})")
    return 0


def export(args: argparse.Namespace) -> int:
    model_path = _check_model_path(args.model)
    if args.format != "saved_model":
        return _export_artifact(args, model_path)
    _check_export_dir(args.export_dir)
    taken = files.versions(args.export_dir)
    if args.version in taken:
        raise CommandError(
            f"export version {args.version} already exists at {taken[args.version]}; expected a new version "
            f"(leave out --version for the next one, {max(taken) + 1})"
        )
    model = _load_model(model_path)
    from tfp_realnvp.export import export_saved_model  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.export.saved_model import IncompatibleVersionError  # pylint: disable=import-outside-toplevel

    try:
        exported = pathlib.Path(export_saved_model(model, args.export_dir, version=args.version))
    except FileExistsError as error:
        raise CommandError(f"{error}; expected a new version (leave out --version for the next one)") from None
    except IncompatibleVersionError as error:
        raise CommandError(str(error)) from None
    print(f"Exported {model_path} to {exported}/  (tfp-realnvp inspect {exported})")
    return 0


def _export_artifact(args: argparse.Namespace, model_path: pathlib.Path) -> int:
    """`export --format onnx|litert`: a new folder, checked against the SavedModel before it appears."""
    if args.version is not None:
        raise CommandError(f"--version numbers SavedModel versions; --format {args.format} writes the one new "
                           f"folder --export-dir names")
    if os.path.exists(args.export_dir):
        raise CommandError(f"{args.export_dir} already exists; not overwriting it (expected a new folder for the "
                           f"{args.format} export)")
    import_tensorflow()
    from tfp_realnvp import export as exports  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.export.artifact import UnsupportedModelError  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.export.equivalence import ExportMismatchError  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.export import litert, onnx  # pylint: disable=import-outside-toplevel

    module = onnx if args.format == "onnx" else litert
    write = exports.export_onnx if args.format == "onnx" else exports.export_litert
    try:
        module.check_installed()  # the extra, before loading the model
        model = _load_model(model_path)
        exported = write(model, args.export_dir)
    except (ImportError, FileExistsError, UnsupportedModelError, ExportMismatchError) as error:
        raise CommandError(str(error)) from None
    print(f"Exported {model_path} to {exported}/ ({args.format}, checked against the SavedModel in TensorFlow's "
          f"C++ loader)  (tfp-realnvp inspect {exported})")
    return 0


def inspect(args: argparse.Namespace) -> int:
    directory = pathlib.Path(args.export_dir)
    if not directory.is_dir():
        raise CommandError(f"no such directory: {args.export_dir} (expected a SavedModel directory)")
    if (directory / "flow_config.json").is_file() and not (directory / "saved_model.pb").is_file():
        return _inspect_artifact(args, directory)
    if not (directory / "saved_model.pb").is_file():
        versions = [v for v in files.versions(directory).values() if (v / "saved_model.pb").is_file()]
        if not versions:
            raise CommandError(
                f"{args.export_dir} holds no saved_model.pb and no numbered version with one; expected a "
                "SavedModel directory such as saved_models/two_moons/1"
            )
        directory = versions[-1]
    import_tensorflow()
    from tfp_realnvp.serving_check import signature_specs  # pylint: disable=import-outside-toplevel

    try:
        specs = signature_specs(directory)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from None
    if args.json:
        print(json.dumps({"export_dir": str(directory), "signatures": specs}, indent=2, default=_json_default))
        return 0
    print(f"SavedModel {directory}  (tag 'serve', {len(specs)} signatures; -1: any size)")
    _print_signatures(specs)
    return 0


def _inspect_artifact(args: argparse.Namespace, directory: pathlib.Path) -> int:
    """`inspect` of an ONNX or LiteRT export: each file's inputs and outputs as its runtime sees them."""
    import_tensorflow()
    from tfp_realnvp.export.artifact import artifact_signatures  # pylint: disable=import-outside-toplevel

    try:
        fmt, specs = artifact_signatures(directory)
    except (FileNotFoundError, ImportError, ValueError) as error:
        raise CommandError(str(error)) from None
    if args.json:
        print(json.dumps({"export_dir": str(directory), "format": fmt, "signatures": specs}, indent=2,
                         default=_json_default))
        return 0
    runtime = "onnxruntime" if fmt == "onnx" else "the LiteRT interpreter"
    print(f"{'ONNX' if fmt == 'onnx' else 'LiteRT'} export {directory}  (as {runtime} sees it, {len(specs)} "
          f"signatures, one file each; -1: any size)")
    _print_signatures(specs)
    return 0


def _print_signatures(specs: dict[str, Any]) -> None:
    def shape(spec: dict[str, Any]) -> str:
        if spec["shape"] is None:
            return "unknown rank"
        return "[" + ", ".join(map(str, spec["shape"])) + "]" + (" (scalar)" if spec["shape"] == () else "")

    for key in sorted(specs, key=lambda k: (k != "serving_default", k)):
        signature = specs[key]
        print()
        print(f"signature {key!r}" + (f"  ({signature['method_name']})" if "method_name" in signature else ""))
        for part in ("inputs", "outputs"):
            print(f"  {part}:")
            tensors = signature[part]
            width = max((len(k) for k in tensors), default=0)
            for name, spec in tensors.items():
                print(f"    {name.ljust(width)}  {spec['dtype']:8} {shape(spec)}")


def plot(args: argparse.Namespace) -> int:
    from tfp_realnvp import plots  # pylint: disable=import-outside-toplevel

    model_path = _check_model_path(args.model)
    out = _check_output_dir(args.output, plots.PLOT_FILES, "figures")
    history_path = pathlib.Path(args.history) if args.history else model_path.parent / HISTORY_FILE
    if args.history and not history_path.is_file():
        raise CommandError(f"no such history file: {args.history} (expected the history.json of a run)")
    history = _read_json(history_path)
    if args.history and (not history or not history.get("loss")):
        raise CommandError(f"{args.history} has no 'loss' list; expected the history.json of a run")
    model = _load_model(model_path)
    config, data = _data_for_model(args, model_path, model, required=False)
    if data is None and model.context_size:
        raise CommandError(
            f"the model {model_path} is conditional: its samples need the contexts of data; expected --dataset "
            "with --condition-on-label or --context-columns, or its run's settings.json beside it"
        )
    x = context = None
    if data is not None:
        x, context = _test_examples(config, data, model, limit=5000)
    seed = args.seed if args.seed is not None else (config.seed if config is not None else 0)
    out.mkdir(parents=True, exist_ok=True)
    title = _dataset_slug(data.name) if data is not None else model_path.parent.name
    written = plots.plot_run(model, out, data=x, context=context, history=history, seed=seed,
                             temperature=args.temperature, title=title)
    print(f"Wrote {', '.join(str(p) for p in written)}")
    return 0
