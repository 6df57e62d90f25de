"""Rows to examples: one shaping rule and one pipeline builder for in-memory and streamed rows."""

from __future__ import annotations

import numpy as np
import pytest

from tfp_realnvp.data import load_dataset
from tfp_realnvp.examples import Examples, split_sizes
from tfp_realnvp.training import ConfigError, TrainingConfig


def _concatenated(batches):
    parts = list(batches.as_numpy_iterator())
    if isinstance(parts[0], dict):
        return tuple(np.concatenate([p[k] for p in parts]) for k in ("x", "context"))
    return np.concatenate(parts), None


def test_split_sizes():
    assert split_sizes(20000, 0.1, streamed=False) == (18000, 2000)
    assert split_sizes(1200, 0.1, streamed=True) == (1080, 120)
    assert split_sizes(5, 0.0, streamed=False) == (5, 0)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A CSV of 60 rows: columns a, c (the context) and b; row i holds i, -i, 100 + i."""
    path = tmp_path_factory.mktemp("examples") / "rows.csv"
    i = np.arange(60.0)
    np.savetxt(path, np.column_stack([i, -i, 100 + i]), delimiter=",", header="a,c,b", comments="", fmt="%g")
    return f"csv:{path}"


@pytest.mark.parametrize("streamed", [False, True], ids=["in_memory", "streamed"])
def test_arrays_and_pipeline_give_the_same_examples(table, streamed):
    data = load_dataset(table, stream_threshold_bytes=0 if streamed else 2**30)
    assert data.streamed == streamed
    examples = Examples(TrainingConfig(dataset=table, context_columns=["c"], validation_split=0.2), data)
    arrays = {part: examples.arrays(part) for part in ("fit", "validation", "test")}  # a streamed read each
    assert (len(arrays["fit"][0]), len(arrays["validation"][0])) == (examples.num_fit, examples.num_validation)
    assert (examples.num_fit, examples.num_validation) == (38, 10)
    x = np.concatenate([arrays["fit"][0], arrays["validation"][0], arrays["test"][0]])
    context = np.concatenate([arrays["fit"][1], arrays["validation"][1], arrays["test"][1]])
    # Every row once; the context column leaves x and becomes the context: a is i, b is 100 + i, c is -i.
    np.testing.assert_array_equal(np.sort(x[:, 0]), np.arange(60.0))
    np.testing.assert_array_equal(x[:, 1] - x[:, 0], 100.0)
    np.testing.assert_array_equal(context[:, 0], -x[:, 0])
    for part in ("fit", "test"):
        batches = examples.pipeline(part, batch_size=7)
        assert int(batches.cardinality()) == -(-examples.count(part) // 7)
        got_x, got_context = _concatenated(batches)
        np.testing.assert_array_equal(got_x, arrays[part][0])
        np.testing.assert_array_equal(got_context, arrays[part][1])
    whole = examples.pipeline("fit", batch_size=7, shuffle=True, seed=0, drop_remainder=True)
    assert int(whole.cardinality()) == 38 // 7 and all(len(b["x"]) == 7 for b in whole)


def test_labels_become_one_hot_and_rows_take_the_event_shape():
    data = load_dataset("digits", num_train=50, num_test=20)
    examples = Examples(TrainingConfig(dataset="digits", condition_on_label=True, event_shape=[8, 8, 1]), data)
    x, context = examples.arrays("test", limit=5)
    np.testing.assert_array_equal(x.reshape(5, 64), data.test[:5])
    np.testing.assert_array_equal(context, np.eye(10)[data.test_labels[:5]])
    with pytest.raises(ConfigError, match=r"event_shape \[8, 4, 1\] holds 32 entries but digits has 64 feature"):
        Examples(TrainingConfig(dataset="digits", event_shape=[8, 4, 1]), data)
