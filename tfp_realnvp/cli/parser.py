"""The command line's arguments: `build_parser()`, and what each `train` option sets.

Importing this module imports neither TensorFlow nor numpy: `tfp-realnvp --help`, `train --help`
and a malformed argument answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Callable
from typing import Any

from tfp_realnvp.choices import (BUILTIN_DATASETS, BUILTIN_FLOWS, DISTRIBUTIONS, LOG_SCALE_BOUNDS, MIXINGS, PERMUTATIONS,
                                 TRANSFORMS, unknown_dataset)
from tfp_realnvp.training import RECIPES, TrainingConfig

__all__ = [
    "CONFIG_FIELDS",
    "FLOW_OPTIONS",
    "PROG",
    "build_parser",
]

PROG = "tfp-realnvp"

# `train` options that set a TrainingConfig field of the same name, and those that set one of
# the flow's options (`--couplings` is real_nvp's `num_couplings`). Every one defaults to None:
# left out, the value comes from --config, else from the dataset's recipe.
CONFIG_FIELDS = (
    "num_train", "num_test", "header", "event_shape", "context_columns", "condition_on_label", "flow", "standardize",
    "integer_levels", "logit_alpha", "whiten", "weight_decay",
    "epochs", "batch_size", "learning_rate", "validation_split", "patience", "jitter", "restarts", "seed",
    "jit_compile", "distribution", "feature_key",
)
FLOW_OPTIONS = ("num_couplings", "hidden_units", "log_scale_bound", "permutation", "transform", "num_bins", "tail_bound",
                "mixing")
_DEFAULT_STREAM_MB = TrainingConfig().stream_above_mb


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
_non_negative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a non-negative number")
_fraction = _number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def _int_list(example: str, what: str) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",")]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(f"expected comma-separated positive {what} such as {example}, got {text!r}")
        return values

    return parse


def _float_list(example: str, what: str, accept: Callable[[float], bool]) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            values = []
        if not values or not all(math.isfinite(v) and accept(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} such as {example}, got {text!r}")
        return values

    return parse


_temperatures = _float_list("1,0.7", "positive numbers", lambda v: v > 0)
_floats = _float_list("1,0,0.5", "finite numbers", lambda v: True)  # --context values
_hidden_units = _int_list("128,128", "layer widths")
_event_shape = _int_list("8,8,1", "sizes")


def _columns(text: str) -> list[int | str]:
    """`--context-columns`: comma-separated column numbers counted from 1, or header names."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated column numbers (from 1) or names, got {text!r}")
    columns: list[int | str] = []
    for part in parts:
        if part.isdigit():
            if int(part) < 1:
                raise argparse.ArgumentTypeError(f"column numbers count from 1, got {text!r}")
            columns.append(int(part))
        else:
            columns.append(part)
    return columns


def _recipe_table() -> str:
    """The recipes as a table: a row per recipe, and one per flow a recipe has settings for, whose
    flow options (not the columns' real_nvp ones) are listed under the table."""
    keys = ["flow", "num_couplings", "hidden_units", "permutation", "epochs", "batch_size", "learning_rate",
            "validation_split", "patience"]
    heads = ["recipe", "flow", "couplings", "hidden", "permutation", "epochs", "batch", "lr", "val", "patience",
             "preprocessing"]
    rows, notes = [heads], []
    for name in RECIPES:
        dataset = name if name != "file" else "csv:data.csv"
        for flow in (None, *RECIPES[name].get("flows", {})):
            config = TrainingConfig.for_dataset(dataset, **({"flow": flow} if flow else {}))
            values = {**config.to_dict(), **config.flow_options}
            cells = []
            for key in keys:
                value = values.get(key, "-")  # an option another flow does not have
                cells.append(",".join(map(str, value)) if isinstance(value, list) else f"{value:g}"
                             if isinstance(value, float) else str(value))
            preprocessing = (["raw (no standardize)"] if not config.standardize else []) + [
                f"{k} {values[k]:g}" for k in ("integer_levels", "logit_alpha") if values[k] is not None]
            rows.append([name, *cells, ", ".join(preprocessing) or "-"])
            if config.adapt_to_table:
                chosen = ", ".join(f.removeprefix("flow_options.") for f in config.adapt_to_table)
                notes.append(f"  {name}: {chosen} are chosen from the table's rows and columns when the run starts "
                             "(the line 'Recipe' says what and why); the row shows the fallbacks")
            if flow:
                shape = f"event shape {','.join(map(str, config.event_shape))}; " if config.event_shape else ""
                options = ", ".join(f"{k} {v}" for k, v in config.flow_options.items())
                notes.append(f"  {name} with --flow {flow}: {shape}{options}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(heads))]
    table = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(table + ([""] + [textwrap.fill(note, 88, subsequent_indent="    ") for note in notes]
                               if notes else []))


def _dataset(text: str) -> str:
    """An argparse `type`: a dataset name, checked before TensorFlow is imported (seconds)."""
    problem = unknown_dataset(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _add_data_options(parser: argparse.ArgumentParser, *, dataset_help: str, train: bool) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", type=_dataset, default=None, metavar="NAME", help=dataset_help)
    default = "none: an unconditional density" if train else "the run's"
    context = group.add_mutually_exclusive_group()
    context.add_argument("--context-columns", type=_columns, default=None, metavar="C,C",
                         help="csv/npy: the columns that condition, p(x | context), by number counted from 1 or "
                              f"by header name; the others are x (default: {default})")
    context.add_argument("--condition-on-label", action="store_true", default=None,
                         help="two_moons, digits: condition on the one-hot class (which moon, which digit) "
                              f"(default: {default})")
    group.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="csv: whether the first line is a header of column names (default: detected; a header "
             "when no cell of the first line is a number)",
    )
    if train:
        group.add_argument("--event-shape", type=_event_shape, metavar="S,S,...",
                           help="the shape each row takes in the flow, e.g. 8,8,1 for the 64 pixels of a digit "
                                "(default: rows are vectors)")
        group.add_argument("--num-train", type=_positive_int, default=None, metavar="N",
                           help="training rows: how many to draw for the toy sets, or keep only the first N "
                                "of the training split of digits and files (quick runs) (default: recipe)")
    group.add_argument("--num-test", type=_positive_int, default=None, metavar="N",
                       help="test rows: how many to draw for the toy sets (default 5000), or the first N of "
                            "the test split of digits and files (default: all"
                            + ("" if train else "; without --dataset, the run's") + ")")
    default = f"{_DEFAULT_STREAM_MB:g}" if train else f"the run's, else {_DEFAULT_STREAM_MB:g}"
    group.add_argument("--stream-above", dest="stream_above_mb", type=_positive_float, default=None, metavar="MB",
                       help="files larger than this many MiB (shards: together) are streamed from disk "
                            "instead of loaded; a streamed file is split by row index, a loaded one by a seeded "
                            f"shuffle; TFRecord files always stream (default: {default})")
    group.add_argument("--feature-key", default=None, metavar="KEY",
                       help="tfrecord: the feature of each tf.train.Example holding the row's floats "
                            "(default: " + ("the records' only float feature)" if train else "the run's, else the "
                                            "records' only float feature)"))


_DATASETS_HELP = (
    ", ".join(f"{name} (8x8 images, 17 grey levels, reported in bits/dim)" if name == "digits" else name
              for name in BUILTIN_DATASETS)
    + ", csv:PATH (comma-separated numbers, one row per example), npy:PATH (a 2-D array saved with np.save) or "
    "tfrecord:PATH (tf.train.Example records, a float feature per row: see --feature-key); PATH may be a quoted "
    "glob of shards, read in sorted order"
)


def build_parser() -> argparse.ArgumentParser:
    """The `tfp-realnvp` parser; each command's namespace has `command` set to its name."""
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
            "status 2; nothing on disk is overwritten. TensorFlow's own start-up log lines are left out; "
            "set TF_CPP_MIN_LOG_LEVEL (0 shows them all) to see what TensorFlow prints.",
        ),
        formatter_class=_Formatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # train ----------------------------------------------------------------------------------------
    train = commands.add_parser(
        "train", help="train a flow; write the model, plots, metrics and a SavedModel export",
        formatter_class=_Formatter,
        description=_describe(
            "Train a flow by maximum likelihood (Adam with a cosine-decayed learning rate, early stopping on "
            "the validation NLL that restores the best weights), report the train, validation and test NLL "
            "(and bits/dim for integer data), and write the run directory:",
            "  model.keras     the trained model (keras.models.load_model)\n"
            "  settings.json   the run's training configuration: 'train --config' repeats the run\n"
            "  run.json        the command that repeats the run, versions and data rows\n"
            "  metrics.json    final NLL (and bits/dim);  history.json  per-epoch losses\n"
            "  density.png     2-D data: the learned density with the data over it\n"
            "  samples.png     samples beside data (digits: real ones beside samples at T = 1, 0.7)\n"
            "  loss.png        training and validation curves",
            "then export the model as a new SavedModel version under --export-dir. While it trains, "
            "RUN_DIR/backup holds the last finished epoch: 'train --resume RUN_DIR' continues a run "
            "that was killed.",
            "Options left out come from --config, else from the dataset's recipe ('file' for csv:/npy: "
            "data; tfp_realnvp.training.RECIPES):",
            _recipe_table(),
        ),
    )
    train.add_argument("--config", metavar="PATH.json",
                       help="read the training configuration from this file, e.g. a run's settings.json, to "
                            "repeat that run; options given here override it")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue an interrupted run (killed, out of time) from the backup of its last "
                            "finished epoch, with the settings in RUN_DIR/settings.json; takes no other option "
                            "but --verbose, and refuses a finished run")
    _add_data_options(train, dataset_help=_DATASETS_HELP + " (default: two_moons)", train=True)
    flow = train.add_argument_group("flow")
    flow.add_argument("--flow", choices=BUILTIN_FLOWS, help="the flow's builder (default: recipe)")
    flow.add_argument("--couplings", dest="num_couplings", type=_positive_int, metavar="N",
                      help="number of affine coupling layers (default: recipe)")
    flow.add_argument("--hidden-units", type=_hidden_units, metavar="W,W",
                      help="hidden layer widths of each coupling's conditioner, e.g. 128,128 (default: recipe)")
    flow.add_argument("--log-scale-bound", choices=LOG_SCALE_BOUNDS,
                      help="how the log-scale is bounded: tanh (times a learned scale), sigmoid, or "
                           "unbounded (default: recipe)")
    flow.add_argument("--permutation", choices=PERMUTATIONS,
                      help="feature permutation between couplings (random is seeded by --seed; lu: a learned "
                           "LU-decomposed linear map, vectors only) (default: recipe)")
    flow.add_argument("--transform", choices=TRANSFORMS,
                      help="each coupling's map: affine (Real NVP's) or spline (rational-quadratic, Neural "
                           "Spline Flows) (default: recipe)")
    flow.add_argument("--num-bins", type=_positive_int, metavar="N",
                      help="bins of each spline, 2 to 64 (--transform spline; default: recipe, else 8)")
    flow.add_argument("--tail-bound", type=_positive_float, metavar="B",
                      help="the spline acts on [-B, B], the identity outside (--transform spline; default: "
                           "recipe, else 3)")
    flow.add_argument("--mixing", choices=MIXINGS,
                      help="real_nvp_multiscale: Glow's learned 1x1 convolution before every coupling, or none "
                           "(default: recipe)")
    flow.add_argument("--integer-levels", type=_positive_int, metavar="L",
                      help="integer data in 0..L-1: dequantize with uniform noise and report bits/dim "
                           "(default: the dataset's, 17 for digits)")
    flow.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=None,
                      help="fit a per-feature mean and standard deviation on the training rows "
                           "(default: recipe)")
    flow.add_argument("--whiten", action=argparse.BooleanOptionalAction, default=None,
                      help="fit the training rows' mean and full covariance instead: the fresh flow is their "
                           "maximum-likelihood Gaussian (default: recipe; for csv:/npy: chosen from the table)")
    flow.add_argument("--logit-alpha", type=_fraction, metavar="A",
                      help="apply logit(A + (1 - A) v) to data scaled to [0, 1) (default: recipe)")
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
    fit.add_argument("--weight-decay", type=_non_negative_float, metavar="W",
                     help="decoupled weight decay (AdamW) per unit learning rate (default: recipe; for csv:/npy: "
                          "chosen from the table)")
    fit.add_argument("--jitter", type=_non_negative_float, metavar="S",
                     help="add fresh N(0, S^2) noise to every training batch (noise regularisation for "
                          "continuous data) (default: recipe, 0)")
    fit.add_argument("--restarts", type=_positive_int, metavar="N",
                     help="train N models (seeds N*seed+j) and keep the one with the lowest training NLL "
                          "(default: recipe, 1)")
    fit.add_argument("--seed", type=_non_negative_int, default=None,
                     help="seed of the data, the initial weights, the permutations and the shuffling "
                          "(default: 0)")
    fit.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                     help="compile the training step with XLA (default: FlowModel.compile's, TensorFlow's "
                          "graph, faster here for small flows; XLA can be faster for wide ones)")
    fit.add_argument("--distribution", choices=DISTRIBUTIONS, default=None,
                     help="train under a tf.distribute strategy: mirrored over this machine's GPUs (or "
                          "--replicas logical CPUs), or multi_worker over the workers the environment variable "
                          "TF_CONFIG names (run the same command on each, with the same --output on a shared "
                          "file system; the chief writes the run); --batch-size stays the global batch "
                          "(default: none)")
    fit.add_argument("--replicas", type=_positive_int, default=None, metavar="N",
                     help="mirrored: the first N GPUs, or without GPUs N logical CPUs carved out of the host's "
                          "(to try the distribution on one machine) (default: every GPU, else one CPU)")
    fit.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                     help="Keras progress: 1 a progress bar, 2 one line per epoch, 0 silent "
                          "(default: 1 on a terminal, else 2)")
    out = train.add_argument_group("output")
    out.add_argument("--output", metavar="DIR",
                     help="run directory; must not already hold results (default: runs/<dataset>-<date>-<time>)")
    out.add_argument("--export-dir", metavar="DIR",
                     help="export a new SavedModel version DIR/<N> (default: saved_models/<dataset>, or "
                          "saved_models/<dataset>_<flow> for a flow other than the recipe's, e.g. "
                          "saved_models/digits_multiscale)")
    out.add_argument("--no-export", action="store_true", help="do not export a SavedModel")

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

    # sample ---------------------------------------------------------------------------------------
    sample = commands.add_parser(
        "sample", help="draw samples from a saved model into a .npy or .csv file", formatter_class=_Formatter,
        description=_describe(
            "Draw samples from a saved model; the same seed gives the same samples. A model of integer data "
            "(digits) gives integers in [0, levels), the levels its training data had; --dequantized gives the "
            "flow's real-valued draw instead, which the logit's alpha lets reach a little below 0 (down to "
            "-levels alpha / (1 - alpha), -0.89 for digits)."
        ),
    )
    sample.add_argument("--model", required=True, metavar="PATH.keras", help="a model saved by 'train'")
    sample.add_argument("-n", "--num-samples", type=_positive_int, default=None, metavar="N",
                        help="number of samples (default: 1000, or the rows of --context-file)")
    sample.add_argument("--seed", type=_non_negative_int, default=0, help="sampling seed (default: 0)")
    sample.add_argument("--temperature", type=_positive_float, default=1.0, metavar="T",
                        help="standard deviation of the latent normal; below 1 gives more typical samples "
                             "(default: 1)")
    given = sample.add_mutually_exclusive_group()
    given.add_argument("--context", type=_floats, metavar="V,V",
                       help="a conditional model's context, one row for every sample, e.g. 1,0")
    given.add_argument("--context-file", metavar="PATH",
                       help="a conditional model's contexts, one row per sample (.npy or .csv); -n defaults to "
                            "its row count")
    given.add_argument("--label", type=_non_negative_int, metavar="K",
                       help="a model conditioned on class labels (train --condition-on-label): sample class K")
    sample.add_argument("--dequantized", action="store_true",
                        help="integer data: write the flow's real values (the integers plus dequantization "
                             "noise) instead of integer levels")
    sample.add_argument("--output", required=True, metavar="FILE",
                        help="a new .npy (np.save) or .csv (one sample per row, flattened) file; never "
                             "overwritten")

    # export ---------------------------------------------------------------------------------------
    export = commands.add_parser(
        "export", help="export a saved model: a TF Serving SavedModel version, ONNX or LiteRT",
        formatter_class=_Formatter,
        description=_describe(
            "Export a saved model as a SavedModel for TF Serving, in EXPORT_DIR/<version>, with the "
            "signatures serving_default, log_prob, sample, forward and inverse (and log_prob_integer for "
            "integer data). --format onnx or litert writes the new folder EXPORT_DIR with one file per "
            "signature (log_prob, forward, inverse, log_prob_integer), each run in its own runtime and "
            "compared with the SavedModel in TensorFlow's C++ loader before it is written."
        ),
    )
    export.add_argument("--format", choices=("saved_model", "onnx", "litert"), default="saved_model",
                        help="saved_model (TF Serving), onnx (onnxruntime; pip install 'tfp-realnvp[onnx]') or "
                             "litert (the LiteRT interpreter; pip install 'tfp-realnvp[litert]')")
    export.add_argument("--model", required=True, metavar="PATH.keras", help="a model saved by 'train'")
    export.add_argument("--export-dir", required=True, metavar="DIR",
                        help="the model's base directory, e.g. saved_models/two_moons; for onnx and litert a "
                             "new folder, e.g. exports/two_moons.onnx")
    export.add_argument("--version", type=_positive_int, default=None, metavar="N",
                        help="version number; must not exist yet (default: one more than the highest); "
                             "saved_model only")

    # inspect --------------------------------------------------------------------------------------
    inspect = commands.add_parser(
        "inspect", help="print an export's signatures, inputs and outputs", formatter_class=_Formatter,
        description=_describe(
            "Print the signatures of a SavedModel as TF Serving sees them (the 'serve' tag), or of an ONNX "
            "or LiteRT export as its runtime does: each signature's inputs and outputs with their dtypes "
            "and shapes (-1: any size)."
        ),
    )
    inspect.add_argument("export_dir", metavar="DIR",
                         help="a SavedModel directory, a base directory of numbered versions (the highest "
                              "is shown), or an ONNX or LiteRT export folder")
    inspect.add_argument("--json", action="store_true", help="print the signatures as JSON")

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
    plot.add_argument("--temperature", type=_temperatures, default=None, metavar="T[,T...]",
                      help="standard deviation of the latent normal for the samples; images take several, a "
                           "grid each (default: 1,0.7 for images, else 1)")
    return parser
