"""Rows to examples: how a dataset's rows become what a flow fits and is evaluated on.

A `Dataset` (`tfp_realnvp.data`) holds rows `[n, features]`, in memory or streamed from disk. A
run's `TrainingConfig` says how the rows become examples:

```none
x        the row without its context columns, reshaped:   [n, *event_shape]
context  the context columns, or the one-hot class:        [n, context_size], or none
```

`Examples(config, data)` checks that once (event shape, context columns, class labels) and then
gives each part of the data, `"train"`, `"test"`, and the training split cut into `"fit"` and
`"validation"` rows (`split_sizes`), in two forms: `arrays(part)`, numpy `(x, context)` for
checks and plots, and `pipeline(part, ...)`, batches as `fit` and `evaluate` take them (`x`, or
`{"x": x, "context": context}`). The pipeline is one builder for in-memory and streamed rows:
the rows of the part, batched (and shuffled) by `data.as_tf_dataset`, shaped, and of a known
number of batches. One shaping function (`_shape`) serves both forms.

```python
data = load_data(config)
examples = Examples(config, data)
x, context = examples.arrays("test")
batches = examples.pipeline("fit", batch_size=256, shuffle=True, seed=0)
```

The training split: in memory the last `n - round(n * (1 - split))` training rows (already in
random order) validate; streamed, the `ceil(n * split)` rows that the streamed split rule picks
(`data.hold_out`), so neither the whole file nor a shuffle buffer is needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from tfp_realnvp import checks
from tfp_realnvp.data import Dataset, as_tf_dataset, hold_out, load_dataset, stream_error
from tfp_realnvp.training import ConfigError

if TYPE_CHECKING:
    from tfp_realnvp.training import TrainingConfig

__all__ = [
    "EVAL_BATCH",
    "PARTS",
    "Examples",
    "context_columns",
    "context_size",
    "feature_count",
    "load_data",
    "split_sizes",
]

EVAL_BATCH = 4096  # rows per evaluation batch: the mean NLL does not depend on it
PARTS = ("train", "fit", "validation", "test")
_READ_BATCH = 8192  # rows per batch when a streamed part is read into memory


def load_data(config: TrainingConfig) -> Dataset:
    """The dataset `config` names, loaded (or opened for streaming) as its fields say.

    Raises:
      DataError: As `tfp_realnvp.data.load_dataset`.
    """
    return load_dataset(config.dataset, num_train=config.num_train, num_test=config.num_test, seed=config.seed,
                        header=config.header, stream_threshold_bytes=int(config.stream_above_mb * 2**20),
                        feature_key=config.feature_key)


def split_sizes(num_train: int, validation_split: float, *, streamed: bool) -> tuple[int, int]:
    """`(rows fitted, rows validated)` of `num_train` training rows.

    In memory the last `n - round(n * (1 - split))` rows validate; streamed, the `ceil(n * split)`
    rows that the streamed split rule picks (`tfp_realnvp.data.hold_out`).
    """
    n_fit = num_train - math.ceil(num_train * validation_split) if streamed else int(
        round(num_train * (1.0 - validation_split)))
    return n_fit, num_train - n_fit


def context_columns(config: TrainingConfig, data: Dataset) -> list[int]:
    """The 0-based indices of `config.context_columns` among `data`'s columns (empty without them).

    Raises:
      ConfigError: For a column number out of range, a name not in the header, or no column left
        for `x`.
    """
    if not config.context_columns:
        return []
    indices = []
    for column in config.context_columns:
        if isinstance(column, str):
            if not data.columns or column not in data.columns:
                known = f"its columns are {', '.join(data.columns)}" if data.columns else "it has no header"
                raise ConfigError(f"context column {column!r} is not a column of {data.name}: {known}")
            indices.append(data.columns.index(column))
        else:
            if column > data.event_size:
                raise ConfigError(f"context column {column} is out of range: {data.name} has {data.event_size} "
                                  "column(s), counted from 1")
            indices.append(column - 1)
    if len(set(indices)) != len(indices):
        raise ConfigError(f"context_columns {list(config.context_columns)} name a column twice")
    if len(indices) >= data.event_size:
        raise ConfigError(f"context_columns take all {data.event_size} columns of {data.name}; expected some left "
                          "for the density's x")
    return sorted(indices)


def context_size(config: TrainingConfig, data: Dataset) -> int:
    """The number of context features: the context columns, or the classes; 0 for an unconditional run.

    Raises:
      ConfigError: For `condition_on_label` on data without class labels, or bad context columns.
    """
    if config.condition_on_label:
        if data.num_classes is None:
            raise ConfigError(f"condition_on_label needs a dataset of classes (two_moons, digits); {data.name} has no "
                              "class labels (for a file, give the columns that condition as context_columns)")
        return data.num_classes
    return len(context_columns(config, data))


def feature_count(config: TrainingConfig, data: Dataset) -> int:
    """The entries of one example's `x`: a row's columns less its context columns."""
    return data.event_size - len(context_columns(config, data))


class Examples:
    """The parts of a dataset as the flow takes them, for one run's configuration.

    Args:
      config: The run: its `event_shape`, `context_columns`, `condition_on_label` and
        `validation_split` say how rows become examples.
      data: The rows.

    Raises:
      ConfigError: If `config.event_shape` does not hold a row's features, the context columns
        are bad, or `condition_on_label` is given for data without classes.
    """

    def __init__(self, config: TrainingConfig, data: Dataset) -> None:
        self.data = data
        self.context_size = context_size(config, data)
        self._columns = context_columns(config, data)
        self._keep = [i for i in range(data.event_size) if i not in self._columns]
        self._num_classes = data.num_classes if config.condition_on_label else None
        features = len(self._keep)
        shape = tuple(config.event_shape or (features,))
        if math.prod(shape) != features:
            what = f"{features} feature(s) per row" + (" besides the context" if self._columns else "")
            raise ConfigError(
                f"event_shape {list(shape)} holds {math.prod(shape)} entries but {data.name} has {what}; "
                f"expected a shape whose entries multiply to {features}"
            )
        self.event_shape: tuple[int, ...] = shape
        self.validation_split = config.validation_split
        self.num_fit, self.num_validation = split_sizes(data.num_train, config.validation_split,
                                                        streamed=data.streamed)
        self._arrays: dict[str, tuple[Any, Any]] = {}

    def count(self, part: str) -> int:
        """The number of examples in `part` (one of `PARTS`)."""
        return {"train": self.data.num_train, "fit": self.num_fit, "validation": self.num_validation,
                "test": self.data.num_test}[_part(part)]

    def arrays(self, part: str, *, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """`(x [n, *event_shape], context [n, C] or None)` of `part`, as numpy arrays.

        A streamed part is read from disk: pass `limit` (its first rows) for a large one.

        Raises:
          DataError: If a streamed file turns out malformed while it is read.
        """
        if self.data.streamed:
            rows = self._stream(part)()
            if limit is not None:
                rows = rows.take(limit)
            try:
                read = list(rows.batch(_READ_BATCH).as_numpy_iterator())
            except tf.errors.InvalidArgumentError as error:
                raise stream_error(error) from None
            rows = np.concatenate(read) if read else np.zeros((0, self.data.event_size), np.float32)
            return self._numpy(rows, None)
        if part not in self._arrays:
            rows, labels = self._rows(part)
            self._arrays[part] = self._numpy(rows, labels)
        x, context = self._arrays[part]
        if limit is None:
            return x, context
        return x[:limit], None if context is None else context[:limit]

    def pipeline(
        self,
        part: str,
        *,
        batch_size: int = EVAL_BATCH,
        shuffle: bool = False,
        seed: int | None = None,
        drop_remainder: bool = False,
        limit: int | None = None,
    ) -> tf.data.Dataset:
        """Batches of `part` as `fit` and `evaluate` take them, with a known number of batches.

        Args:
          part: One of `PARTS`.
          batch_size: Examples per batch. Defaults to `EVAL_BATCH`.
          shuffle: Shuffle anew every epoch: in memory all of the part's examples, streamed a
            buffer of 10 000 rows (`data.as_tf_dataset`). Defaults to `False`.
          seed: The shuffle's seed. Defaults to `None`.
          drop_remainder: Leave out the last partial batch, unless the part has fewer examples
            than `batch_size` (then its one batch holds them all). Defaults to `False`.
          limit: Only the first `limit` examples of the part. Defaults to `None`.

        Returns:
          A prefetching `tf.data.Dataset` of `x`, or of `{"x": x, "context": context}`.
        """
        count = self.count(part) if limit is None else min(limit, self.count(part))
        drop = drop_remainder and count >= batch_size
        if self.data.streamed:
            rows = self._stream(part)
            source = (lambda: rows().take(limit)) if limit is not None else rows
            ds = as_tf_dataset(source, batch_size=batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop)
            ds = ds.map(lambda batch: _inputs(*self._shape(batch, None)))
        else:
            x, context = self.arrays(part, limit=limit)
            ds = as_tf_dataset(tf.data.Dataset.from_tensor_slices(_inputs(x, context)), batch_size=batch_size,
                               shuffle=shuffle, seed=seed, shuffle_buffer_size=max(count, 1), drop_remainder=drop)
        # The count is known: say so, or Keras runs a streamed first epoch until the data run out.
        batches = count // batch_size if drop else math.ceil(count / batch_size)
        # A multi-worker job: every worker reads every batch and keeps its share (tf.data's DATA
        # policy), so all run the same number of steps (tfp_realnvp.distribution says why).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return ds.apply(tf.data.experimental.assert_cardinality(batches)).with_options(options)

    def _rows(self, part: str) -> tuple[np.ndarray, np.ndarray | None]:
        """An in-memory part's rows and class labels."""
        split = "test" if _part(part) == "test" else "train"
        rows = self.data.test if split == "test" else self.data.train
        labels = self.data.test_labels if split == "test" else self.data.train_labels
        if self._num_classes is not None and labels is None:
            raise ConfigError(f"condition_on_label needs the class labels of {self.data.name}'s rows")
        start, stop = {"fit": (None, self.num_fit), "validation": (self.num_fit, None)}.get(part, (None, None))
        return rows[start:stop], None if labels is None else labels[start:stop]

    def _stream(self, part: str) -> Callable[[], tf.data.Dataset]:
        """A streamed part's rows, as a callable that builds a fresh `tf.data.Dataset`."""
        stream, split = self.data.stream, self.validation_split
        return {"train": stream, "test": self.data.test_stream,
                "fit": hold_out(stream, split, held_out=False) if self.num_validation else stream,
                "validation": hold_out(stream, split, held_out=True)}[_part(part)]

    def _numpy(self, rows: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        x, context = self._shape(tf.constant(rows), None if labels is None else tf.constant(labels))
        return x.numpy(), None if context is None else context.numpy()

    def _shape(self, rows: tf.Tensor, labels: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Rows `[n, features]` as `(x [n, *event_shape], context or None)`: the one shaping rule."""
        x, context = rows, None
        if self._columns:
            x, context = tf.gather(rows, self._keep, axis=1), tf.gather(rows, self._columns, axis=1)
        if self._num_classes is not None:
            context = tf.one_hot(labels, self._num_classes, dtype=rows.dtype)
        return tf.reshape(x, [-1, *self.event_shape]), context


def _part(part: str) -> str:
    return checks.one_of("part", part, PARTS)


def _inputs(x: Any, context: Any) -> Any:
    """What `fit` and `evaluate` take: `x`, or `{"x": x, "context": context}` for a conditional run."""
    return x if context is None else {"x": x, "context": context}

