"""The `tfp-realnvp` command line: train, evaluate, sample, export, inspect and plot flows.

```none
tfp-realnvp train                                  two moons with its recipe: model, plots, metrics, export
tfp-realnvp train --dataset digits                 8x8 digits, reported in bits/dim
tfp-realnvp train --dataset csv:data.csv --epochs 50 --output runs/mine
tfp-realnvp train --config runs/mine/settings.json repeat a run
tfp-realnvp evaluate --model runs/mine/model.keras --dataset csv:data.csv
tfp-realnvp sample --model runs/mine/model.keras -n 1000 --seed 0 --output samples.npy
tfp-realnvp export --model runs/mine/model.keras --export-dir saved_models/mine
tfp-realnvp inspect saved_models/mine/1
tfp-realnvp plot --model runs/mine/model.keras --output figures
```

The pieces: `parser.py` (the arguments; imports neither TensorFlow nor numpy, so `--help` and a
malformed argument answer at once), `commands.py` (one function per command, calling the
library: `training.fit_flow`, `export_saved_model`, `plots`), `quiet.py` (TensorFlow's start-up
log lines left out).

`train` builds a `TrainingConfig` from `--config` or the dataset's recipe
(`tfp_realnvp.training.RECIPES`), with the options given on the command line on top. A run
writes into its own directory (`runs/<dataset>-<time>` unless `--output` says otherwise):
`model.keras`, `settings.json` (the configuration: `train --config` repeats the run),
`run.json` (the command, versions and data rows), `history.json`, `metrics.json` and the PNG
figures of `plots.py`, then exports a new SavedModel version under `saved_models/<dataset>/`
(`saved_models/<dataset>_<flow>/` for a flow other than the recipe's).

Errors in what the user gave (a missing or malformed data file or configuration, an output
that already holds results, an existing export version, data whose feature count the model
does not take) end the command with one line `tfp-realnvp: error: <what is wrong, and what was
expected>` on stderr and exit status 2, and nothing already on disk is overwritten. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tfp_realnvp.cli.parser import PROG, build_parser

__all__ = [
    "main",
]


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
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already reported by the parser
        return exit_.code if isinstance(exit_.code, int) else 0
    args.argv = argv
    from tfp_realnvp.cli import commands  # pylint: disable=import-outside-toplevel

    try:
        return getattr(commands, args.command)(args)
    except KeyboardInterrupt as interrupt:
        resume = getattr(interrupt, "resume", None)  # `train` sets it once the run can be resumed
        print(f"{PROG}: interrupted" + (f"; continue the run with '{resume}'" if resume else ""), file=sys.stderr)
        return 130
    except Exception as error:  # pylint: disable=broad-except
        if not _is_user_error(error):
            raise
        _report(str(error))
        return 2


def _is_user_error(error: Exception) -> bool:
    from tfp_realnvp.cli.commands import CommandError  # pylint: disable=import-outside-toplevel
    from tfp_realnvp.training import ConfigError  # pylint: disable=import-outside-toplevel

    if isinstance(error, (CommandError, ConfigError, FileExistsError)):
        return True
    data = sys.modules.get("tfp_realnvp.data")  # DataError without importing TensorFlow for it
    return data is not None and isinstance(error, data.DataError)


def _report(message: str) -> None:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{PROG}: error: {line}", file=sys.stderr, flush=True)
