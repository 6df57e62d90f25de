"""The recipe for your own table: settings chosen from its rows and columns.

The `file` recipe (`csv:`/`npy:` data) leaves these fields to the table
(`TrainingConfig.adapt_to_table`); `adapt_to_table(config, data)` chooses each one still listed,
from `n`, the rows trained on (the training rows less the validation split), and `D`, the
columns of the density, and says why in one line:

```none
whiten          n >= 2 D: the full-covariance Gaussian of the rows is the starting point
                (else per-column standardisation: too few rows for a trustworthy covariance)
hidden_units    two layers of width 4 D, rounded to a power of two in [32, 256]
num_couplings   4 below 2 000 rows, 6 below 20 000, 8 from there
batch_size      n / 16 as a power of two in [32, 512]: 16 steps an epoch where the rows allow
epochs          about 4 000 steps (at least 40 epochs, at most 1 000)
patience        about 400 steps (10 to 60 epochs)
weight_decay    10 below 2 000 rows, 1 below 20 000, 0.1 from there (AdamW: each step shrinks the
                weights by learning rate x weight decay, 1% at the start for small tables; it keeps
                the couplings from extrapolating steeply to rows far out, which cost breast_cancer's
                test rows 3 nats at 0.01 and gained 4 at 10: benchmarks/TABLES.md)
validation_split 0.2 below 2 000 rows (early stopping needs a validation set it can trust), else 0.1
```

A field given explicitly (a command-line option, a `for_dataset`/`replace` change) is not in
`adapt_to_table` and stays as given.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tfp_realnvp.examples import feature_count, split_sizes
from tfp_realnvp.training import TABLE_FIELDS, TrainingConfig

if TYPE_CHECKING:
    from tfp_realnvp.data import Dataset

__all__ = [
    "TABLE_FIELDS",
    "adapt_to_table",
    "table_choices",
]

_SMALL, _LARGE = 2_000, 20_000  # rows trained on: the tiers of couplings, weight decay and validation split


def _power_of_two(value: float, low: int, high: int) -> int:
    return int(min(high, max(low, 2 ** round(math.log2(max(value, 1.0))))))


def table_choices(num_rows: int, num_columns: int, *, validation_split: float | None = None) -> dict[str, object]:
    """Every `TABLE_FIELDS` value for a table of `num_rows` training rows (before the validation
    split) and `num_columns` columns in the density; `validation_split` given keeps it."""
    split = validation_split if validation_split is not None else (0.2 if num_rows * 0.8 < _SMALL else 0.1)
    n, d = max(1, split_sizes(num_rows, split, streamed=False)[0]), num_columns
    batch = _power_of_two(n / 16, 32, 512)
    steps_per_epoch = max(1, n // batch)
    return {
        "validation_split": split,
        "whiten": n >= 2 * d,
        "flow_options.num_couplings": 4 if n < _SMALL else 6 if n < _LARGE else 8,
        "flow_options.hidden_units": [_power_of_two(4 * d, 32, 256)] * 2,
        "batch_size": batch,
        "epochs": min(1000, max(40, math.ceil(4000 / steps_per_epoch))),
        "patience": min(60, max(10, math.ceil(400 / steps_per_epoch))),
        "weight_decay": 10.0 if n < _SMALL else 1.0 if n < _LARGE else 0.1,
    }


def adapt_to_table(config: TrainingConfig, data: Dataset) -> tuple[TrainingConfig, str]:
    """`config` with the fields in `config.adapt_to_table` chosen for `data`, and the line saying what and why.

    The configuration returned has `adapt_to_table == ()`: it is the run, ready to save and repeat.
    """
    d = feature_count(config, data)
    fixed_split = None if "validation_split" in config.adapt_to_table else config.validation_split
    choices = table_choices(data.num_train, d, validation_split=fixed_split)
    split = choices["validation_split"]
    n = split_sizes(data.num_train, split, streamed=data.streamed)[0]
    chosen = {name: value for name, value in choices.items() if name in config.adapt_to_table}
    options = {name.split(".", 1)[1]: value for name, value in chosen.items() if name.startswith("flow_options.")}
    fields = {name: value for name, value in chosen.items() if not name.startswith("flow_options.")}
    unstandardised = bool(fields.get("whiten")) and not config.standardize
    if unstandardised:  # whitening is a standardisation: off with standardize
        fields["whiten"] = False
    adapted = TrainingConfig.from_dict({**config.to_dict(), **fields, "adapt_to_table": [],
                                        "flow_options": {**config.flow_options, **options}})
    tier = "small" if n < _SMALL else "medium" if n < _LARGE else "large"
    said = []
    if "whiten" in chosen:
        said.append("starts at the rows' full-covariance Gaussian (whiten)" if adapted.whiten else
                    "no whitening (standardize is off)" if unstandardised else
                    f"per-column standardisation (fewer than 2x{d} rows for a full covariance)")
    if options:
        said.append(f"{adapted.flow_options.get('num_couplings')} couplings of "
                    f"{','.join(map(str, adapted.flow_options.get('hidden_units', [])))} ({tier} table; width 4x{d} "
                    "columns)")
    if "weight_decay" in chosen:
        said.append(f"weight decay {adapted.weight_decay:g}")
    if "batch_size" in chosen:
        said.append(f"batch {adapted.batch_size} (rows / 16 within 32..512)")
    if "epochs" in chosen or "patience" in chosen:
        steps = max(1, n // adapted.batch_size)
        said.append(f"up to {adapted.epochs} epochs ({adapted.epochs * steps} steps; ~4000 within 40..1000 epochs), "
                    f"patience {adapted.patience} ({adapted.patience * steps} steps; ~400 within 10..60)")
    if "validation_split" in chosen:
        said.append(f"validation {adapted.validation_split:g}")
    given = sorted(set(TABLE_FIELDS) - set(config.adapt_to_table))
    line = (f"Recipe    {data.num_train} rows x {d} columns ({n} to fit): " + "; ".join(said or ["nothing to choose"])
            + (f"; as given: {', '.join(name.removeprefix('flow_options.') for name in given)}" if given else ""))
    return adapted, line
