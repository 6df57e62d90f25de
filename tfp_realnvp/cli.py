"""The `tfp-realnvp` command line: train, evaluate, sample, export, inspect and plot Real NVP flows.

```none
tfp-realnvp train                                  two moons with its recipe: model, plots, metrics, export
tfp-realnvp train --dataset digits                 8x8 digits, reported in bits/dim
tfp-realnvp train --dataset csv:data.csv --epochs 50 --output runs/mine
tfp-realnvp evaluate --model runs/mine/model.keras --dataset csv:data.csv
tfp-realnvp sample --model runs/mine/model.keras -n 1000 --seed 0 --output samples.npy
tfp-realnvp export --model runs/mine/model.keras --export-dir saved_models/mine
tfp-realnvp inspect saved_models/mine/1
tfp-realnvp plot --model runs/mine/model.keras --output figures
```

`train` takes its hyper-parameters from `RECIPES`, one entry per dataset, and any option given on
the command line overrides the recipe. A run writes into its own directory (`runs/<dataset>-<time>`
unless `--output` says otherwise): `model.keras`, `settings.json` (every setting and the command
line that repeats the run), `history.json`, `metrics.json` and the PNG figures of `plots.py`, then
exports a new SavedModel version under `saved_models/<dataset>/`.

Errors in what the user gave (a missing or malformed data file, an output that already holds
results, an existing export version, data whose feature count the model does not take) end the
command with one line `tfp-realnvp: error: <what is wrong, and what was expected>` on stderr and
exit status 2, and nothing already on disk is overwritten. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import re
import shlex
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any

from tfp_realnvp._files import write_new

__all__ = [
    "RECIPES",
    "main",
]

PROG = "tfp-realnvp"

# Training recipes: the defaults of `tfp-realnvp train --dataset NAME`. Keys are dataset names, and
# "file" for `csv:PATH` / `npy:PATH`. Every key is an option of `train` (`num_couplings` is
# `--couplings`); `num_train=None` means the dataset's default size.
_TOY_RECIPE: dict[str, Any] = dict(
    num_couplings=8, hidden_units=(128, 128), log_scale_bound="tanh", permutation="reverse",
    epochs=60, batch_size=256, learning_rate=2e-3, validation_split=0.1, patience=10, num_train=None,
)
RECIPES: dict[str, dict[str, Any]] = {
    # Tuned on two moons (benchmarks/two_moons_quality.py): raw coordinates fit better than
    # standardised ones (test NLL ~0.33 vs ~0.34), and batch 512 for 60 epochs beat batch 256 for
    # 40 (less overfitting of the 20 000 points, fewer steps).
    "two_moons": {**_TOY_RECIPE, "standardize": False, "batch_size": 512},
    "checkerboard": _TOY_RECIPE,
    "eight_gaussians": _TOY_RECIPE,
    "pinwheel": _TOY_RECIPE,
    # 1437 training images of 64 pixels: a random permutation mixes all pixels (a reversal only swaps
    # the two halves), and integer pixels 0..16 are dequantized, scaled to [0, 1] and logit-transformed.
    "digits": {
        **_TOY_RECIPE, "permutation": "random", "integer_levels": 17, "logit_alpha": 0.05, "clipnorm": 1.0,
        "epochs": 100, "batch_size": 128, "learning_rate": 1e-3, "patience": 15,
    },
    "file": {**_TOY_RECIPE, "epochs": 100, "learning_rate": 1e-3},
}

_LOG_SCALE_BOUNDS = ("tanh", "sigmoid", "unbounded")
_PERMUTATIONS = ("reverse", "random")
_MODEL_FILE = "model.keras"
_SETTINGS_FILE = "settings.json"
_METRICS_FILE = "metrics.json"
_HISTORY_FILE = "history.json"
_PLOT_FILES = ("density.png", "samples.png", "loss.png")  # plots.DENSITY_FILE, SAMPLES_FILE, LOSS_FILE
_RUN_FILES = (_MODEL_FILE, _SETTINGS_FILE, _METRICS_FILE, _HISTORY_FILE, *_PLOT_FILES)
_EVAL_BATCH = 4096  # rows per evaluation batch: the mean NLL does not depend on it
_ADAPT_ROWS = 100_000  # streamed data: rows read to fit the standardisation
_DEFAULT_STREAM_MB = 512


class _CommandError(Exception):
    """A problem with what the user gave; reported as one line and exit status 2."""


# --------------------------------------------------------------------------------------------------
# Argument parsing.


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks; `_describe` wraps their paragraphs."""


def _describe(*paragraphs: str) -> str:
    """Paragraphs wrapped to 88 columns; one that starts with spaces is kept as written (a table)."""
    return "\n\n".join(
        p if p.startswith(" ") else textwrap.fill(p, 88, break_on_hyphens=False) for p in paragraphs
    )


def _number(convert: Callable[[str], Any], accept: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """An argparse `type`: `convert(text)`, refused with "expected <expected>" unless `accept`ed."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
_fraction = _number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def _hidden_units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(part) for part in text.split(","))
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths such as 128,128, got {text!r}"
        )
    return units


def _recipe_table() -> str:
    keys = ["num_couplings", "hidden_units", "permutation", "epochs", "batch_size", "learning_rate",
            "validation_split", "patience"]
    heads = ["recipe", "couplings", "hidden", "permutation", "epochs", "batch", "lr", "val", "patience",
             "preprocessing"]
    rows = [heads] + [
        [name] + [",".join(map(str, r[k])) if k == "hidden_units" else f"{r[k]:g}" if isinstance(r[k], float)
                  else str(r[k]) for k in keys]
        + [", ".join((["raw (no standardize)"] if r.get("standardize") is False else [])
                     + [f"{k} {r[k]:g}" for k in ("integer_levels", "logit_alpha") if r.get(k) is not None])
           or "-"]
        for name, r in RECIPES.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    lines = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _add_data_options(parser: argparse.ArgumentParser, *, dataset_help: str, train: bool) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="two_moons" if train else None, metavar="NAME", help=dataset_help)
    group.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="csv: whether the first line is a header of column names (default: detected; a header "
             "when no cell of the first line is a number)",
    )
    if train:
        group.add_argument("--num-train", type=_positive_int, default=None, metavar="N",
                           help="training rows: how many to draw for the toy sets, or keep only the first N "
                                "of the training split of digits and files (quick runs) (default: recipe)")
    group.add_argument("--num-test", type=_positive_int, default=None, metavar="N",
                       help="test rows: how many to draw for the toy sets (default 5000), or the first N of "
                            "the test split of digits and files (default: all"
                            + ("" if train else "; without --dataset, the run's") + ")")
    default = f"{_DEFAULT_STREAM_MB}" if train else f"the run's, else {_DEFAULT_STREAM_MB}"
    group.add_argument("--stream-above", type=_positive_float, default=None, metavar="MB",
                       help="files larger than this many MiB are streamed from disk instead of loaded; a "
                            "streamed file is split by row index, a loaded one by a seeded shuffle "
                            f"(default: {default})")


_DATASETS_HELP = (
    "two_moons, checkerboard, eight_gaussians, pinwheel, digits (8x8 images, 17 grey levels, reported in "
    "bits/dim), csv:PATH (comma-separated numbers, one row per example) or npy:PATH (a 2-D array saved "
    "with np.save)"
)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=_describe(
            "Train Real NVP normalizing flows on 2-D toy densities, 8x8 digits or your own CSV/NPY data; "
            "evaluate, sample, plot and export them as TF Serving SavedModels."
        ),
        epilog=_describe(
            "Run 'tfp-realnvp COMMAND --help' for the options of each command. 'tfp-realnvp train' with no "
            "options trains on two moons, writes a run directory under runs/ and exports a SavedModel under "
            "saved_models/two_moons/.",
            "Errors in what you give (files, data, outputs that exist) are reported on one line with exit "
            "status 2; nothing on disk is overwritten.",
        ),
        formatter_class=_Formatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # train ----------------------------------------------------------------------------------------
    train = commands.add_parser(
        "train", help="train a flow; write the model, plots, metrics and a SavedModel export",
        formatter_class=_Formatter,
        description=_describe(
            "Train a Real NVP flow by maximum likelihood (Adam with a cosine-decayed learning rate, early "
            "stopping on the validation NLL that restores the best weights), report the train, validation "
            "and test NLL (and bits/dim for integer data), and write the run directory:",
            "  model.keras     the trained model (keras.models.load_model)\n"
            "  settings.json   every setting, and the command line that repeats the run\n"
            "  metrics.json    final NLL (and bits/dim);  history.json  per-epoch losses\n"
            "  density.png     2-D data: the learned density with the data over it\n"
            "  samples.png     samples beside data (digits: sampled images beside real ones)\n"
            "  loss.png        training and validation curves",
            "then export the model as a new SavedModel version under --export-dir.",
            "Options left out come from the dataset's recipe ('file' for csv:/npy: data):",
            _recipe_table(),
        ),
    )
    _add_data_options(train, dataset_help=_DATASETS_HELP + " (default: two_moons)", train=True)
    flow = train.add_argument_group("flow")
    flow.add_argument("--couplings", dest="num_couplings", type=_positive_int, metavar="N",
                      help="number of affine coupling layers (default: recipe)")
    flow.add_argument("--hidden-units", type=_hidden_units, metavar="W,W",
                      help="hidden layer widths of each coupling's conditioner, e.g. 128,128 (default: recipe)")
    flow.add_argument("--log-scale-bound", choices=_LOG_SCALE_BOUNDS,
                      help="how the log-scale is bounded: tanh (times a learned scale), sigmoid, or "
                           "unbounded (default: recipe)")
    flow.add_argument("--permutation", choices=_PERMUTATIONS,
                      help="feature permutation between couplings (random is seeded by --seed) "
                           "(default: recipe)")
    flow.add_argument("--integer-levels", type=_positive_int, metavar="L",
                      help="integer data in 0..L-1: dequantize with uniform noise and report bits/dim "
                           "(default: the dataset's, 17 for digits)")
    flow.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                      help="fit a per-feature mean and standard deviation on the training rows "
                           "(default: recipe)")
    flow.add_argument("--logit-alpha", type=_fraction, metavar="A",
                      help="apply logit(A + (1 - A) v) to data scaled to [0, 1] (default: recipe)")
    fit = train.add_argument_group("training")
    fit.add_argument("--epochs", type=_positive_int, metavar="N", help="maximum epochs (default: recipe)")
    fit.add_argument("--batch-size", type=_positive_int, metavar="N", help="rows per step (default: recipe)")
    fit.add_argument("--learning-rate", type=_positive_float, metavar="LR",
                     help="initial Adam learning rate, cosine-decayed to 0 over --epochs (default: recipe)")
    fit.add_argument("--validation-split", type=_fraction, metavar="F",
                     help="fraction of the training rows held out for validation and early stopping; "
                          "0 monitors the training loss (default: recipe)")
    fit.add_argument("--patience", type=_non_negative_int, metavar="N",
                     help="stop after N epochs without improvement and restore the best weights; 0 turns "
                          "early stopping off (default: recipe)")
    fit.add_argument("--seed", type=_non_negative_int, default=0,
                     help="seed of the data, the initial weights, the permutations and the shuffling "
                          "(default: 0)")
    fit.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                     help="compile the training step with XLA: faster steps after a compilation that takes "
                          "seconds to a minute (default: FlowModel.compile's, XLA on a single device)")
    fit.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                     help="Keras progress: 1 a progress bar, 2 one line per epoch, 0 silent "
                          "(default: 1 on a terminal, else 2)")
    out = train.add_argument_group("output")
    out.add_argument("--output", metavar="DIR",
                     help="run directory; must not already hold results (default: runs/<dataset>-<date>-<time>)")
    out.add_argument("--export-dir", metavar="DIR",
                     help="export a new SavedModel version DIR/<N> (default: saved_models/<dataset>)")
    out.add_argument("--no-export", action="store_true", help="do not export a SavedModel")
    train.set_defaults(handler=_train)

    # evaluate -------------------------------------------------------------------------------------
    evaluate = commands.add_parser(
        "evaluate", help="print a saved model's test NLL (and bits/dim)", formatter_class=_Formatter,
        description=_describe(
            "Print the mean negative log-likelihood (nats per example, and bits per dimension for integer "
            "data) of a saved model on a dataset's test split."
        ),
    )
    evaluate.add_argument("--model", required=True, metavar="PATH.keras", help="a model saved by 'train'")
    _add_data_options(
        evaluate, train=False,
        dataset_help=_DATASETS_HELP + ". Defaults to the dataset of the run the model comes from (its "
                                      "settings.json)",
    )
    evaluate.add_argument("--seed", type=_non_negative_int, default=None,
                          help="data seed (default: the run's, else 0)")
    evaluate.set_defaults(handler=_evaluate)

    # sample ---------------------------------------------------------------------------------------
    sample = commands.add_parser(
        "sample", help="draw samples from a saved model into a .npy or .csv file", formatter_class=_Formatter,
        description=_describe(
            "Draw samples from a saved model; the same seed gives the same samples. Integer data (digits) "
            "come out dequantized, as real numbers in [0, levels)."
        ),
    )
    sample.add_argument("--model", required=True, metavar="PATH.keras", help="a model saved by 'train'")
    sample.add_argument("-n", "--num-samples", type=_positive_int, default=1000, metavar="N",
                        help="number of samples (default: 1000)")
    sample.add_argument("--seed", type=_non_negative_int, default=0, help="sampling seed (default: 0)")
    sample.add_argument("--temperature", type=_positive_float, default=1.0, metavar="T",
                        help="standard deviation of the latent normal; below 1 gives more typical samples "
                             "(default: 1)")
    sample.add_argument("--output", required=True, metavar="FILE",
                        help="a new .npy (np.save) or .csv (one sample per row) file; never overwritten")
    sample.set_defaults(handler=_sample)

    # export ---------------------------------------------------------------------------------------
    export = commands.add_parser(
        "export", help="export a saved model as a TF Serving SavedModel version", formatter_class=_Formatter,
        description=_describe(
            "Export a saved model as a SavedModel for TF Serving, in EXPORT_DIR/<version>, with the "
            "signatures serving_default, log_prob, sample, forward and inverse."
        ),
    )
    export.add_argument("--model", required=True, metavar="PATH.keras", help="a model saved by 'train'")
    export.add_argument("--export-dir", required=True, metavar="DIR",
                        help="the model's base directory, e.g. saved_models/two_moons")
    export.add_argument("--version", type=_positive_int, default=None, metavar="N",
                        help="version number; must not exist yet (default: one more than the highest)")
    export.set_defaults(handler=_export)

    # inspect --------------------------------------------------------------------------------------
    inspect = commands.add_parser(
        "inspect", help="print a SavedModel's signatures, inputs and outputs", formatter_class=_Formatter,
        description=_describe(
            "Print the signatures of a SavedModel as TF Serving sees them (the 'serve' tag): each "
            "signature's inputs and outputs with their dtypes and shapes (-1: any size)."
        ),
    )
    inspect.add_argument("export_dir", metavar="DIR",
                         help="a SavedModel directory, or a base directory of numbered versions (the highest "
                              "is shown)")
    inspect.add_argument("--json", action="store_true", help="print the signatures as JSON")
    inspect.set_defaults(handler=_inspect)

    # plot -----------------------------------------------------------------------------------------
    plot = commands.add_parser(
        "plot", help="redraw a saved model's figures (PNG)", formatter_class=_Formatter,
        description=_describe(
            "Draw the figures of 'train' from a saved model: density.png (2-D data), samples.png, "
            "and loss.png when the run's history.json is beside the model (or given with --history)."
        ),
    )
    plot.add_argument("--model", required=True, metavar="PATH.keras", help="a model saved by 'train'")
    plot.add_argument("--output", required=True, metavar="DIR",
                      help="directory for the PNGs; must not already hold them")
    _add_data_options(
        plot, train=False,
        dataset_help=_DATASETS_HELP + ". The test split is drawn with the model. Defaults to the run's "
                                      "dataset (its settings.json); without one, samples only",
    )
    plot.add_argument("--history", metavar="PATH.json", help="per-epoch losses (default: history.json beside "
                                                             "the model, if present)")
    plot.add_argument("--seed", type=_non_negative_int, default=None,
                      help="seed of the samples and the data (default: the run's, else 0)")
    plot.add_argument("--temperature", type=_positive_float, default=1.0, metavar="T",
                      help="standard deviation of the latent normal for the samples (default: 1)")
    plot.set_defaults(handler=_plot)
    return parser


# --------------------------------------------------------------------------------------------------
# Entry point.


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `tfp-realnvp` command line and returns its exit status.

    Args:
      argv: The arguments after the program name. Defaults to `sys.argv[1:]`.

    Returns:
      0 on success, 2 for a usage or data error (reported as one line on stderr), 130 when
      interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already reported by _Parser.error
        return exit_.code if isinstance(exit_.code, int) else 0
    args.argv = argv
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # pylint: disable=broad-except
        if not _is_user_error(error):
            raise
        _report(str(error))
        return 2


def _is_user_error(error: Exception) -> bool:
    if isinstance(error, (_CommandError, FileExistsError)):
        return True
    data = sys.modules.get("tfp_realnvp.data")  # DataError without importing TensorFlow for it
    return data is not None and isinstance(error, data.DataError)


def _report(message: str) -> None:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Shared helpers.


def _dataset_slug(spec: str) -> str:
    kind, sep, path = spec.partition(":")
    name = pathlib.Path(path).stem if sep and kind in ("csv", "npy") else spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"


def _absolute_spec(spec: str) -> str:
    """`csv:rel/path` -> `csv:/abs/rel/path`, so a saved setting works from any directory."""
    kind, sep, path = spec.partition(":")
    if sep and kind in ("csv", "npy") and path:
        return f"{kind}:{os.path.abspath(os.path.expanduser(path))}"
    return spec


def _recipe(spec: str) -> dict[str, Any]:
    kind, sep, _ = spec.partition(":")
    if sep and kind in ("csv", "npy"):
        return dict(RECIPES["file"])
    return dict(RECIPES.get(spec, RECIPES["file"]))


def _existing_results(directory: pathlib.Path, names: Sequence[str]) -> list[str]:
    return [name for name in names if (directory / name).exists()]


def _check_output_dir(path: str, names: Sequence[str], what: str) -> pathlib.Path:
    directory = pathlib.Path(path)
    if directory.exists() and not directory.is_dir():
        raise _CommandError(f"--output {path} is a file; expected a directory for the {what}")
    found = _existing_results(directory, names) if directory.is_dir() else []
    if found:
        raise _CommandError(
            f"--output {path} already holds results ({', '.join(found)}); expected a new or empty "
            "directory (nothing is overwritten)"
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
        raise _CommandError(f"cannot read {path}: {error}; expected the JSON file written by 'train'") from None
    return value if isinstance(value, dict) else None


def _check_model_path(path: str) -> pathlib.Path:
    model_path = pathlib.Path(path)
    if not model_path.exists():
        raise _CommandError(f"no such model file: {path} (expected a .keras file written by 'tfp-realnvp train')")
    if model_path.is_dir() or model_path.suffix != ".keras":
        raise _CommandError(f"--model {path} is not a .keras file; expected the model.keras of a run")
    return model_path


def _load_model(model_path: pathlib.Path) -> Any:
    import zipfile  # pylint: disable=import-outside-toplevel

    import keras  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.model import FlowModel  # pylint: disable=import-outside-toplevel  # registers the class

    if not zipfile.is_zipfile(model_path):
        raise _CommandError(f"{model_path} is not a .keras archive (not a zip file); expected a model saved by "
                            "'tfp-realnvp train'")
    try:
        model = keras.models.load_model(model_path, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise _CommandError(
            f"cannot load {model_path}: {first} (expected a model saved by 'tfp-realnvp train')"
        ) from None
    if not isinstance(model, FlowModel):
        raise _CommandError(f"{model_path} holds a {type(model).__name__}, expected a tfp_realnvp FlowModel")
    model.compile()
    return model


def _run_settings(model_path: pathlib.Path) -> dict[str, Any]:
    return _read_json(model_path.parent / _SETTINGS_FILE) or {}


def _load_data(spec: str, *, num_train: int | None, num_test: int | None, seed: int, header: bool | None,
               stream_above: float | None) -> Any:
    from tfp_realnvp.data import load_dataset  # pylint: disable=import-outside-toplevel

    return load_dataset(spec, num_train=num_train, num_test=num_test, seed=seed, header=header,
                        stream_threshold_bytes=int((stream_above or _DEFAULT_STREAM_MB) * 2**20))


def _stream_error(error: Exception) -> _CommandError:
    """The data problem behind a failed `tf.data` read of a streamed file, as a one-line error."""
    text = str(error)
    match = re.search(r"assertion failed: \[(.*?)\]", text, re.S) or re.search(r"DataError: (.*)", text)
    message = match.group(1) if match else text.strip().splitlines()[0]
    return _CommandError(message.replace("\\'", "'"))


def _check_event_size(data: Any, model: Any, model_path: pathlib.Path) -> None:
    if data.event_size != model.event_size:
        raise _CommandError(
            f"dataset {data.name} has {data.event_size} feature(s) per row but the model {model_path} takes "
            f"{model.event_size}; expected data like the model's training data"
        )


def _test_rows(data: Any, model: Any, limit: int | None = None) -> Any:
    """The test split as an array (streamed files: up to `limit` rows), checked against the model."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if data.streamed:
        ds = data.test_stream()
        if limit is not None:
            ds = ds.take(limit)
        try:
            rows = np.concatenate(list(ds.batch(8192).as_numpy_iterator()))
        except tf.errors.InvalidArgumentError as error:
            raise _stream_error(error) from None
        rows = rows.reshape(-1, data.event_size)
    else:
        rows = data.test if limit is None else data.test[:limit]
    try:
        model.preprocessing.check(rows)
    except ValueError as error:
        raise _CommandError(f"test data of {data.name} do not fit the model: {error}") from None
    return rows


def _nll(model: Any, rows: Any) -> dict[str, float]:
    """`model.evaluate` on an array or a batched `tf.data.Dataset`: the mean NLL (and bits/dim)."""
    batch = {"batch_size": _EVAL_BATCH} if hasattr(rows, "shape") else {}
    return model.evaluate(rows, verbose=0, return_dict=True, **batch)


def _metrics(logs: dict[str, float], rows: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows, "nll": float(logs["nll"])}
    if "bits_per_dim" in logs:
        out["bits_per_dim"] = float(logs["bits_per_dim"])
    return out


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


def _check_export_dir(path: str) -> None:
    base = pathlib.Path(path)
    if base.exists() and not base.is_dir():
        raise _CommandError(f"--export-dir {path} is a file; expected a directory of SavedModel versions")


# --------------------------------------------------------------------------------------------------
# train


def _resolve_training(args: argparse.Namespace) -> dict[str, Any]:
    settings = _recipe(args.dataset)
    for key in ("num_couplings", "hidden_units", "log_scale_bound", "permutation", "standardize", "integer_levels",
                "logit_alpha", "epochs", "batch_size", "learning_rate", "validation_split", "patience",
                "num_train"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    settings.setdefault("standardize", True)
    settings.setdefault("integer_levels", None)
    settings.setdefault("logit_alpha", None)
    return settings


def _repeat_command(spec: str, s: dict[str, Any], args: argparse.Namespace, export_dir: str | None) -> str:
    words = [PROG, "train", "--dataset", _absolute_spec(spec)]
    if args.header is not None:
        words.append("--header" if args.header else "--no-header")
    if s["num_train"] is not None:
        words += ["--num-train", str(s["num_train"])]
    if args.num_test is not None:
        words += ["--num-test", str(args.num_test)]
    if args.stream_above is not None:
        words += ["--stream-above", repr(args.stream_above)]
    words += ["--couplings", str(s["num_couplings"]), "--hidden-units", ",".join(map(str, s["hidden_units"])),
              "--log-scale-bound", s["log_scale_bound"], "--permutation", s["permutation"],
              "--standardize" if s["standardize"] else "--no-standardize"]
    if s["integer_levels"] is not None:
        words += ["--integer-levels", str(s["integer_levels"])]
    if s["logit_alpha"] is not None:
        words += ["--logit-alpha", repr(float(s["logit_alpha"]))]
    words += ["--epochs", str(s["epochs"]), "--batch-size", str(s["batch_size"]),
              "--learning-rate", repr(float(s["learning_rate"])),
              "--validation-split", repr(float(s["validation_split"])), "--patience", str(s["patience"]),
              "--seed", str(args.seed)]
    if args.jit_compile is not None:
        words.append("--jit-compile" if args.jit_compile else "--no-jit-compile")
    words += ["--export-dir", os.path.abspath(export_dir)] if export_dir else ["--no-export"]
    return shlex.join(words)


def _split_stream(make_rows: Callable[[], Any], fraction: float, validation: bool) -> Callable[[], Any]:
    """Rows of a streamed training split: the validation rows by index (`data.py`'s test-row rule), or the rest."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.data import _is_test_row_tf  # pylint: disable=import-outside-toplevel

    # Plain TensorFlow ops: AutoGraph has nothing to convert (and would re-read this file's source).
    @tf.autograph.experimental.do_not_convert
    def keep(i: Any, row: Any) -> Any:
        return tf.equal(_is_test_row_tf(i, fraction), validation)

    @tf.autograph.experimental.do_not_convert
    def drop_index(i: Any, row: Any) -> Any:
        return row

    def make() -> Any:
        return make_rows().enumerate().filter(keep).map(drop_index)

    return make


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What `fit`, `adapt` and the final evaluation read: arrays, or batched `tf.data` pipelines."""

    fit: Any
    fit_kwargs: dict[str, Any]
    validation: Any  # None without a validation split
    train_eval: Any
    test: Any
    adapt: Any
    adapt_kwargs: dict[str, Any]


def _training_inputs(data: Any, *, split: float, n_fit: int, n_val: int, batch_size: int, seed: int) -> _Inputs:
    """The training split cut into `n_fit` rows to fit and `n_val` to validate, and the test split.

    In memory, the validation rows are the last `n_val` of the training split (already in random
    order). Streamed, the rows that data.py's test-row rule picks for the fraction `split` validate
    (`ceil(n * split)` of them), and the standardisation is fitted on the first 100000 training rows.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.data import as_tf_dataset  # pylint: disable=import-outside-toplevel

    if not data.streamed:
        x_fit, x_val = data.train[:n_fit], data.train[n_fit:]
        validation = x_val if n_val else None
        return _Inputs(fit=x_fit, fit_kwargs=dict(validation_data=validation, batch_size=batch_size, shuffle=True),
                       validation=validation, train_eval=x_fit, test=data.test, adapt=x_fit, adapt_kwargs={})

    fit_rows = _split_stream(data.stream, split, validation=False) if n_val else data.stream

    def batches(make_rows: Callable[[], Any], rows: int, size: int, shuffle: bool) -> Any:
        # The row count is known: say so, or Keras runs the first epoch until the data run out.
        ds = as_tf_dataset(make_rows, batch_size=size, shuffle=shuffle, seed=seed)
        return ds.apply(tf.data.experimental.assert_cardinality(math.ceil(rows / size)))

    validation = (batches(_split_stream(data.stream, split, validation=True), n_val, _EVAL_BATCH, False)
                  if n_val else None)
    return _Inputs(
        fit=batches(fit_rows, n_fit, batch_size, shuffle=True),
        fit_kwargs=dict(validation_data=validation, shuffle=False),  # shuffled by the pipeline
        validation=validation,
        train_eval=batches(fit_rows, n_fit, _EVAL_BATCH, False),
        test=batches(data.test_stream, data.num_test, _EVAL_BATCH, False),
        adapt=as_tf_dataset(fit_rows, batch_size=4096, shuffle=False),
        adapt_kwargs=dict(max_batches=math.ceil(_ADAPT_ROWS / 4096)),
    )


def _train(args: argparse.Namespace) -> int:
    started = time.time()
    spec = args.dataset
    s = _resolve_training(args)
    # Cheap checks first: nothing below this block may fail on what the user typed after minutes of training.
    if args.output is not None:
        run_dir = _check_output_dir(args.output, _RUN_FILES, "run's results")
    else:
        run_dir = _new_run_dir(spec)
    export_dir = None
    export_saved_model = None
    if not args.no_export:
        export_dir = args.export_dir or os.path.join("saved_models", _dataset_slug(spec))
        _check_export_dir(export_dir)
        from tfp_realnvp.export import export_saved_model  # pylint: disable=import-outside-toplevel
    elif args.export_dir:
        raise _CommandError("--export-dir and --no-export contradict each other; give one of them")

    import keras  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfp_realnvp import plots  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.model import FlowModel  # pylint: disable=import-outside-toplevel

    data = _load_data(spec, num_train=s["num_train"], num_test=args.num_test, seed=args.seed,
                      header=args.header, stream_above=args.stream_above)
    if s["integer_levels"] is None:
        s["integer_levels"] = data.integer_levels
    n = data.num_train
    split = s["validation_split"]
    n_fit = int(round(n * (1.0 - split))) if not data.streamed else n - math.ceil(n * split)
    if split and not 0 < n_fit < n:
        raise _CommandError(
            f"--validation-split {split:g} of the {n} training rows of {data.name} leaves "
            f"{n - n_fit} validation and {n_fit} training rows; expected at least one of each "
            "(use more data, another split, or --validation-split 0)"
        )
    n_val = n - n_fit

    keras.utils.set_random_seed(args.seed)
    try:
        model = FlowModel(
            data.event_size, num_couplings=s["num_couplings"], hidden_units=s["hidden_units"],
            permutation=s["permutation"], seed=args.seed, log_scale_bound=s["log_scale_bound"],
            standardize=s["standardize"], integer_levels=s["integer_levels"], logit_alpha=s["logit_alpha"],
        )
    except ValueError as error:
        raise _CommandError(f"cannot build the flow: {error}") from None

    # The standardisation is fitted on the training rows only.
    inputs = _training_inputs(data, split=split, n_fit=n_fit, n_val=n_val, batch_size=s["batch_size"],
                              seed=args.seed)
    stream_errors: tuple[type[Exception], ...] = (tf.errors.InvalidArgumentError,) if data.streamed else ()
    try:
        model.adapt(inputs.adapt, **inputs.adapt_kwargs)
    except stream_errors as error:
        raise _stream_error(error) from None
    except ValueError as error:
        raise _CommandError(f"training data of {data.name} do not fit the flow: {error}") from None
    if not data.streamed:
        try:
            model.preprocessing.check(data.test)
        except ValueError as error:
            raise _CommandError(f"test data of {data.name} do not fit the flow: {error}") from None

    steps_per_epoch = math.ceil(n_fit / s["batch_size"])
    schedule = keras.optimizers.schedules.CosineDecay(s["learning_rate"], decay_steps=s["epochs"] * steps_per_epoch)
    model.compile(optimizer=keras.optimizers.Adam(schedule, global_clipnorm=s.get("clipnorm")),
                  jit_compile="auto" if args.jit_compile is None else args.jit_compile)
    monitor = "val_loss" if split else "loss"
    callbacks: list[Any] = [keras.callbacks.TerminateOnNaN()]
    if s["patience"] > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=s["patience"],
                                                       restore_best_weights=True))
    export_path_note = f", then export to {export_dir}/<next version>" if export_dir else ""

    run_dir.mkdir(parents=True, exist_ok=True)
    written = [_write_json(run_dir / _SETTINGS_FILE, {
        "command": _repeat_command(spec, s, args, export_dir),
        "argv": [PROG, *args.argv],
        "cwd": os.getcwd(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "output": str(run_dir),
        "export_dir": export_dir,
        "dataset": {"spec": _absolute_spec(spec), "description": data.description, "event_size": data.event_size,
                    "num_train": n, "num_fit": n_fit, "num_validation": n_val, "num_test": data.num_test,
                    "header": args.header, "seed": args.seed, "stream_above": args.stream_above,
                    "streamed": data.streamed},
        "model": {k: v for k, v in model.get_config().items() if k not in ("name", "trainable", "dtype")},
        "training": {"epochs": s["epochs"], "batch_size": s["batch_size"], "learning_rate": s["learning_rate"],
                     "schedule": f"CosineDecay({s['learning_rate']!r}, decay_steps={s['epochs'] * steps_per_epoch})",
                     "optimizer": "Adam", "validation_split": split, "patience": s["patience"],
                     "early_stopping_monitor": monitor if s["patience"] > 0 else None, "seed": args.seed},
        "versions": _versions(),
    })]

    print(f"Dataset   {data.description}")
    print(f"Flow      {s['num_couplings']} affine couplings, conditioners {list(s['hidden_units'])}, "
          f"{s['log_scale_bound']} log-scale bound, {s['permutation']} permutation, "
          f"{model.count_params():,} weights")
    print(f"Training  {n_fit} rows, {n_val} for validation; up to {s['epochs']} epochs of batch "
          f"{s['batch_size']}, Adam with cosine decay from {s['learning_rate']:g}"
          + (f", early stopping after {s['patience']} epochs without progress" if s["patience"] > 0 else ""))
    print(f"Output    {run_dir}{export_path_note}", flush=True)

    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)
    fit_started = time.time()
    try:
        history = model.fit(inputs.fit, epochs=s["epochs"], callbacks=callbacks, verbose=verbose,
                            **inputs.fit_kwargs)
    except stream_errors as error:
        raise _stream_error(error) from None
    fit_seconds = time.time() - fit_started
    losses = {k: [float(v) for v in values] for k, values in history.history.items()}
    epochs_run = len(losses.get("loss", []))
    best_epoch = plots.best_epoch(losses.get(monitor, []))
    stopped_early = epochs_run < s["epochs"]

    try:
        results = {"train": _metrics(_nll(model, inputs.train_eval), n_fit)}
        if inputs.validation is not None:
            results["validation"] = _metrics(_nll(model, inputs.validation), n_val)
        results["test"] = _metrics(_nll(model, inputs.test), data.num_test)
    except stream_errors as error:
        raise _stream_error(error) from None

    written += [write_new(run_dir / _MODEL_FILE, model.save), _write_json(run_dir / _HISTORY_FILE, losses)]
    plot_data = _test_rows(data, model, limit=5000)
    written += plots.plot_run(model, run_dir, data=plot_data, history=losses, seed=args.seed,
                              title=_dataset_slug(data.name))

    exported = None
    if export_saved_model is not None:
        exported = pathlib.Path(export_saved_model(model, export_dir))
    metrics = {
        "dataset": _absolute_spec(spec),
        **results,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "stopped_early": stopped_early,
        "training_seconds": round(fit_seconds, 2),
        "total_seconds": round(time.time() - started, 2),
        "export": str(exported) if exported else None,
    }
    written.append(_write_json(run_dir / _METRICS_FILE, metrics))

    restored = " (best weights restored)" if s["patience"] > 0 and best_epoch not in (None, epochs_run) else ""
    stop = "stopped early" if stopped_early else "all epochs"
    print()
    print(f"Trained {epochs_run} epochs ({stop}) in {fit_seconds:.1f} s; best epoch {best_epoch}{restored}.")
    print()
    print(_table(results))
    print()
    print(f"Run directory  {run_dir}/")
    print("  " + "  ".join(p.name for p in sorted(written, key=lambda p: _RUN_FILES.index(p.name))))
    if exported is not None:
        print(f"SavedModel     {exported}/  (tfp-realnvp inspect {exported})")
    return 0


# --------------------------------------------------------------------------------------------------
# evaluate, sample, export, inspect, plot


def _data_for_model(args: argparse.Namespace, model_path: pathlib.Path, *, required: bool) -> tuple[Any, int]:
    """The --dataset, or else the test split of the model's run (as its settings.json describes it).

    Options given on the command line win; without --dataset, the run's seed, header, test rows and
    stream threshold fill the others, so `evaluate` sees the test rows `train` reported on.
    Returns (None, seed) when there is no dataset and none is `required`.
    """
    run = _run_settings(model_path).get("dataset", {}) if args.dataset is None else {}
    spec = args.dataset or run.get("spec")

    def option(name: str) -> Any:
        value = getattr(args, name)
        return value if value is not None else run.get(name)

    seed = int(option("seed") or 0)
    if spec is None:
        if required:
            raise _CommandError(
                f"no --dataset given and no {_SETTINGS_FILE} beside {model_path} names one; expected "
                "--dataset NAME, csv:PATH or npy:PATH"
            )
        return None, seed
    data = _load_data(spec, num_train=None, num_test=option("num_test"), seed=seed, header=option("header"),
                      stream_above=option("stream_above"))
    return data, seed


def _evaluate(args: argparse.Namespace) -> int:
    model_path = _check_model_path(args.model)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from tfp_realnvp.data import as_tf_dataset  # pylint: disable=import-outside-toplevel

    model = _load_model(model_path)
    data, _ = _data_for_model(args, model_path, required=True)
    _check_event_size(data, model, model_path)
    if data.streamed:
        rows: Any = as_tf_dataset(data.test_stream, batch_size=_EVAL_BATCH, shuffle=False).apply(
            tf.data.experimental.assert_cardinality(math.ceil(data.num_test / _EVAL_BATCH)))
    else:
        rows = _test_rows(data, model)
    try:
        logs = _nll(model, rows)
    except tf.errors.InvalidArgumentError as error:
        if not data.streamed:
            raise
        raise _stream_error(error) from None
    print(f"Model    {model_path}")
    print(f"Dataset  {data.description}")
    print()
    print(_table({"test": _metrics(logs, data.num_test)}))
    return 0


def _sample(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.output)
    if out.suffix not in (".npy", ".csv"):
        raise _CommandError(f"--output {args.output} must end in .npy or .csv")
    if out.exists():
        raise _CommandError(f"--output {args.output} already exists; expected a new file (nothing is overwritten)")
    if not out.parent.is_dir():
        raise _CommandError(f"--output {args.output}: directory {out.parent} does not exist")
    model_path = _check_model_path(args.model)
    import numpy as np  # pylint: disable=import-outside-toplevel

    model = _load_model(model_path)
    samples = np.asarray(model.sample(args.num_samples, seed=args.seed, temperature=args.temperature))
    if out.suffix == ".npy":
        write_new(out, lambda p: np.save(p, samples))
    else:  # %.9g: float32 values read back exactly
        write_new(out, lambda p: np.savetxt(p, samples, delimiter=",", fmt="%.9g"))
    print(f"Wrote {len(samples)} samples of {samples.shape[1]} feature(s) to {out} "
          f"(seed {args.seed}, temperature {args.temperature:g})")
    return 0


def _export(args: argparse.Namespace) -> int:
    model_path = _check_model_path(args.model)
    _check_export_dir(args.export_dir)
    base = pathlib.Path(args.export_dir)
    taken = {int(p.name): p for p in _version_dirs(base)} if base.is_dir() else {}
    if args.version in taken:
        raise _CommandError(
            f"export version {args.version} already exists at {taken[args.version]}; expected a new version "
            f"(leave out --version for the next one, {max(taken) + 1})"
        )
    from tfp_realnvp.export import export_saved_model  # pylint: disable=import-outside-toplevel
    model = _load_model(model_path)
    try:
        exported = pathlib.Path(export_saved_model(model, args.export_dir, version=args.version))
    except FileExistsError as error:
        raise _CommandError(f"{error}; expected a new version (leave out --version for the next one)") from None
    print(f"Exported {model_path} to {exported}/  (tfp-realnvp inspect {exported})")
    return 0


def _version_dirs(base: pathlib.Path) -> list[pathlib.Path]:
    """The version folders of an export base directory (ASCII-digit names, as TF Serving reads them), by number."""
    return sorted((p for p in base.iterdir() if p.is_dir() and re.fullmatch(r"[0-9]+", p.name)),
                  key=lambda p: int(p.name))


def _inspect(args: argparse.Namespace) -> int:
    from tfp_realnvp.serving_check import signature_specs  # pylint: disable=import-outside-toplevel

    directory = pathlib.Path(args.export_dir)
    if not directory.is_dir():
        raise _CommandError(f"no such directory: {args.export_dir} (expected a SavedModel directory)")
    if not (directory / "saved_model.pb").is_file():
        versions = [v for v in _version_dirs(directory) if (v / "saved_model.pb").is_file()]
        if not versions:
            raise _CommandError(
                f"{args.export_dir} holds no saved_model.pb and no numbered version with one; expected a "
                "SavedModel directory such as saved_models/two_moons/1"
            )
        directory = versions[-1]
    try:
        specs = signature_specs(directory)
    except (FileNotFoundError, ValueError) as error:
        raise _CommandError(str(error)) from None
    if args.json:
        print(json.dumps({"export_dir": str(directory), "signatures": specs}, indent=2, default=_json_default))
        return 0

    def shape(spec: dict[str, Any]) -> str:
        if spec["shape"] is None:
            return "unknown rank"
        return "[" + ", ".join(map(str, spec["shape"])) + "]" + (" (scalar)" if spec["shape"] == () else "")

    print(f"SavedModel {directory}  (tag 'serve', {len(specs)} signatures; -1: any size)")
    for key in sorted(specs, key=lambda k: (k != "serving_default", k)):
        signature = specs[key]
        print()
        print(f"signature {key!r}  ({signature['method_name']})")
        for part in ("inputs", "outputs"):
            print(f"  {part}:")
            tensors = signature[part]
            width = max((len(k) for k in tensors), default=0)
            for name, spec in tensors.items():
                print(f"    {name.ljust(width)}  {spec['dtype']:8} {shape(spec)}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    model_path = _check_model_path(args.model)
    out = _check_output_dir(args.output, _PLOT_FILES, "figures")
    history_path = pathlib.Path(args.history) if args.history else model_path.parent / _HISTORY_FILE
    if args.history and not history_path.is_file():
        raise _CommandError(f"no such history file: {args.history} (expected the history.json of a run)")
    history = _read_json(history_path)
    if args.history and (not history or not history.get("loss")):
        raise _CommandError(f"{args.history} has no 'loss' list; expected the history.json of a run")
    from tfp_realnvp import plots  # pylint: disable=import-outside-toplevel

    model = _load_model(model_path)
    data, seed = _data_for_model(args, model_path, required=False)
    rows = None
    if data is not None:
        _check_event_size(data, model, model_path)
        rows = _test_rows(data, model, limit=5000)
    out.mkdir(parents=True, exist_ok=True)
    title = _dataset_slug(data.name) if data is not None else model_path.parent.name
    written = plots.plot_run(model, out, data=rows, history=history, seed=seed, temperature=args.temperature,
                             title=title)
    print(f"Wrote {', '.join(str(p) for p in written)}")
    return 0
