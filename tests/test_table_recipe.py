"""The table recipe: what it chooses for tables of a few sizes, and that every choice given stays given."""

from __future__ import annotations

import types

import pytest

from tfp_realnvp.cli.commands import training_config
from tfp_realnvp.cli.parser import build_parser
from tfp_realnvp.table_recipe import adapt_to_table, table_choices
from tfp_realnvp.training import TABLE_FIELDS, TrainingConfig


def _table(rows: int, columns: int) -> types.SimpleNamespace:
    """What adapt_to_table reads of a Dataset."""
    return types.SimpleNamespace(name="csv:t.csv", num_train=rows, event_size=columns, streamed=False, columns=None)


@pytest.mark.parametrize("rows, columns, expected", [
    # wine's training split: small, 20% validates, whitened, 4 couplings of 4 x 13 -> 64 wide, small batches
    (142, 13, {"validation_split": 0.2, "whiten": True, "flow_options.num_couplings": 4,
               "flow_options.hidden_units": [64, 64], "batch_size": 32, "epochs": 1000, "patience": 60,
               "weight_decay": 10.0}),
    # digits as a table: 1150 rows to fit, batch 1150 / 16 -> 64, 17 steps an epoch
    (1438, 64, {"validation_split": 0.2, "whiten": True, "flow_options.num_couplings": 4,
                "flow_options.hidden_units": [256, 256], "batch_size": 64, "epochs": 236, "patience": 24,
                "weight_decay": 10.0}),
    # a large table: 10% validates, 8 couplings, batch 512, the epoch floor of 40, less weight decay
    (1_000_000, 10, {"validation_split": 0.1, "whiten": True, "flow_options.num_couplings": 8,
                     "flow_options.hidden_units": [32, 32], "batch_size": 512, "epochs": 40, "patience": 10,
                     "weight_decay": 0.1}),
    # more columns than rows: no full covariance, per-column standardisation
    (40, 64, {"whiten": False}),
])
def test_choices_for_table_sizes(rows, columns, expected):
    choices = table_choices(rows, columns)
    assert set(choices) == set(TABLE_FIELDS)
    assert {k: choices[k] for k in expected} == expected


def test_the_file_recipe_adapts_and_says_why():
    config, line = adapt_to_table(TrainingConfig.for_dataset("csv:t.csv"), _table(142, 13))
    assert config.adapt_to_table == () and config.whiten and config.flow_options["hidden_units"] == [64, 64]
    assert line.startswith("Recipe    142 rows x 13 columns (114 to fit): starts at the rows' full-covariance "
                           "Gaussian (whiten); 4 couplings of 64,64")
    assert "as given" not in line
    TrainingConfig.from_dict(config.to_dict())  # the resolved run saves and loads as it is


def test_choices_given_stay_given():
    config = TrainingConfig.for_dataset("csv:t.csv", epochs=7, standardize=False,
                                        flow_options={"hidden_units": [16]})
    adapted, line = adapt_to_table(config, _table(142, 13))
    assert (adapted.epochs, adapted.whiten, adapted.flow_options["hidden_units"]) == (7, False, [16])
    assert adapted.flow_options["num_couplings"] == 4 and adapted.batch_size == 32  # still chosen
    assert line.endswith("as given: epochs, hidden_units, whiten")


def test_command_line_flags_stay_given():
    args = build_parser().parse_args(["train", "--dataset", "csv:t.csv", "--no-whiten", "--weight-decay", "0.5",
                                      "--couplings", "3", "--patience", "4"])
    adapted, _ = adapt_to_table(training_config(args), _table(142, 13))
    assert (adapted.whiten, adapted.weight_decay, adapted.flow_options["num_couplings"], adapted.patience) == (
        False, 0.5, 3, 4)
    assert adapted.epochs == 1000  # not given: chosen


def test_built_in_datasets_do_not_adapt():
    assert TrainingConfig.for_dataset("two_moons").adapt_to_table == ()
    assert TrainingConfig.for_dataset("csv:t.csv").replace(dataset="digits").adapt_to_table == ()


@pytest.mark.parametrize("rows, columns", [(142, 13), (1_000_000, 10)])
def test_readme_quotes_the_recipe_lines(rows, columns):
    # README's "Your own data" shows what the recipe prints for a small and a large table.
    import pathlib

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    _, line = adapt_to_table(TrainingConfig.for_dataset("csv:t.csv"), _table(rows, columns))
    assert f"  {line}\n" in readme


def test_a_run_without_standardisation_says_why_it_is_not_whitened():
    # A settings file may keep standardize off while whiten is still the recipe's to choose: the
    # line must not claim a per-column standardisation, nor too few rows.
    config = TrainingConfig.from_dict({**TrainingConfig.for_dataset("csv:t.csv").to_dict(), "standardize": False})
    assert "whiten" in config.adapt_to_table
    adapted, line = adapt_to_table(config, _table(142, 13))
    assert not adapted.whiten and not adapted.standardize
    assert "no whitening (standardize is off)" in line and "per-column standardisation" not in line
