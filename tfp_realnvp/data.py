"""Built-in datasets and CSV/NPY loading with validation.

Everything a flow trains on enters through `load_dataset`, which returns a `Dataset`: a float array of
samples `x` with shape `[n, d]` (rows are samples, columns features) split into `train` and `test`.

Built-in datasets (`BUILTIN_DATASETS`):

* `two_moons`: sklearn's `make_moons(n, noise=0.05)`, raw coordinates. The default (20000 train rows with
  `random_state=0`, 5000 test rows with `random_state=1`) is the project's benchmark recipe.
* `checkerboard`, `eight_gaussians`, `pinwheel`: the 2-D toy densities of the flow literature, with the
  formulas of FFJORD's `toy_data.py` [1], drawn from `np.random.default_rng`.
* `digits`: sklearn's bundled 8x8 handwritten digits (1797 rows, 64 pixels with integer values 0..16, so
  `integer_levels=17`); the values stay integers, dequantization is the model's job.

User data: `"csv:PATH"` (comma-separated numbers, optional header row) or `"npy:PATH"` (a 2-D numeric
array saved with `np.save`). Files are validated eagerly and every problem raises `DataError` with a
one-line message that names the file, the place (rows and columns counted from 1, as a person opening the
file counts them) and what was expected. Files larger than `stream_threshold_bytes` are not loaded whole:
the `Dataset` then holds `stream` / `test_stream` callables that build `tf.data` pipelines reading the
file from disk, and the same checks run inside those pipelines.

One CSV parser (`_parse_csv_lines`) reads a file in memory and streamed (there through
`tf.data.Dataset.from_generator`, as NPY files stream): `np.loadtxt` on each chunk of 4 MiB of lines,
and, for a chunk it refuses (quoted cells, a problem), a cell-by-cell pass that reads it or words its first
problem. It replaced an `np.loadtxt` fast path beside a `tf.strings` parser that had to agree with it:
`benchmarks/csv_loading.py` (CSV_LOADING.md) times both on a 100 000 x 10 file.

The split rules:

* In memory (digits, CSV, NPY): a permutation of the rows from `np.random.default_rng(seed)`; the first
  `ceil(n * test_fraction)` permuted rows are the test set, the rest the training set.
* Streamed (large CSV, NPY): by row index, so it needs neither the whole file nor a shuffle buffer. Data row
  `i` (counted from 0, header and blank lines excluded) is a test row when
  `ceil((i + 1) * test_fraction) > ceil(i * test_fraction)`: rows 0, 5, 10, ... for `test_fraction=0.2`.
  Both rules give exactly `ceil(n * test_fraction)` test rows.

Example:

    >>> data = load_dataset("two_moons", num_train=1000, num_test=200)
    >>> data.train.shape, data.test.shape, data.train.dtype
    ((1000, 2), (200, 2), dtype('float32'))
    >>> batches = as_tf_dataset(data.train, batch_size=256, shuffle=True, seed=0)

References:
    [1] Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud. FFJORD: Free-form Continuous Dynamics for
        Scalable Reversible Generative Models. ICLR 2019. https://github.com/rtqichen/ffjord
    [2] Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from tfp_realnvp import checks
from tfp_realnvp.choices import BUILTIN_DATASETS, FILE_KINDS, unknown_dataset

__all__ = [
    "BUILTIN_DATASETS",
    "DataError",
    "Dataset",
    "as_tf_dataset",
    "hold_out",
    "load_dataset",
    "stream_error",
]

_DEFAULT_NUM_TRAIN = 20000
_DEFAULT_NUM_TEST = 5000
_DIGITS_LEVELS = 17  # pixel values 0..16
_MAX_SEED = 2**32 - 2  # two_moons uses seed and seed + 1 as sklearn random_state, which must be < 2**32

# What counts as a number in a CSV cell (`_parse_csv_lines`, header detection). [0-9], not \d: Python's \d
# also matches non-ASCII digits. NaN and infinity parse, then fail the finiteness check with their own
# message. A cell may be padded with ASCII whitespace and wrapped in one pair of quotes.
_NUMBER_RE = re.compile(r"(?i)[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|nan|inf|infinity)")
_BOM = b"\xef\xbb\xbf"
_CSV_CHUNK_BYTES = 4 * 2**20  # bytes of lines parsed at a time (in memory and streamed alike)
_NPY_CHUNK_BYTES = 4 * 2**20  # bytes read from a memory-mapped .npy per generator step
_STREAM_SHUFFLE_BUFFER = 10_000  # rows, default shuffle buffer for streamed input in as_tf_dataset


class DataError(ValueError):
    """Bad user data; the message names the problem and what was expected."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Samples split into a training and a test set.

    Rows are samples and columns features: `train` has shape `[num_train, event_size]`. A file too large to
    load (see `load_dataset`'s `stream_threshold_bytes`) has `train = test = None` and instead `stream` and
    `test_stream`, zero-argument callables that each build a fresh `tf.data.Dataset` of float rows of shape
    `[event_size]` read from disk. `eq=False` because fields hold arrays: equality is identity.

    Attributes:
        name: The spec it was loaded from, e.g. `"two_moons"` or `"csv:data.csv"`.
        train: Float array `[num_train, event_size]`, or None when streamed.
        test: Float array `[num_test, event_size]`, or None when streamed.
        event_size: Number of features `d`.
        integer_levels: Number of integer levels of each feature for discrete data (17 for digits, whose
            pixels are 0..16), or None for continuous data.
        description: One line saying where the data came from and how it was split.
        stream: For streamed files, a callable returning a `tf.data.Dataset` of training rows. Defaults to
            None.
        test_stream: For streamed files, a callable returning a `tf.data.Dataset` of test rows. Defaults to
            None.
        num_train: Number of training rows; filled from `train` when not given, None if unknown.
        num_test: Number of test rows; filled from `test` when not given, None if unknown.
        train_labels: For datasets made of classes (two_moons: which moon, 0 or 1; digits: the digit),
            the integer class of each training row; None otherwise.
        test_labels: Likewise for the test rows.
        num_classes: The number of classes when there are labels, else None.
        columns: A CSV file's column names, from its header; None without one.
    """

    name: str
    train: np.ndarray | None
    test: np.ndarray | None
    event_size: int
    integer_levels: int | None
    description: str
    stream: Callable[[], tf.data.Dataset] | None = None
    test_stream: Callable[[], tf.data.Dataset] | None = None
    num_train: int | None = None
    num_test: int | None = None
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    num_classes: int | None = None
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_train is None and self.train is not None:
            object.__setattr__(self, "num_train", int(self.train.shape[0]))
        if self.num_test is None and self.test is not None:
            object.__setattr__(self, "num_test", int(self.test.shape[0]))

    @property
    def streamed(self) -> bool:
        """Whether the rows are read from disk through `stream` / `test_stream` rather than held in memory."""
        return self.stream is not None


def load_dataset(
    spec: str,
    *,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
    header: bool | None = None,
    dtype: npt.DTypeLike = "float32",
    test_fraction: float = 0.2,
    stream_threshold_bytes: int = 512 * 2**20,
    feature_key: str | None = None,
) -> Dataset:
    """Loads a built-in dataset or a user's CSV/NPY file, validated and split into train and test.

    Args:
        spec: A name from `BUILTIN_DATASETS`, `"csv:PATH"` or `"npy:PATH"`.
        num_train: For the toy sets, the number of training samples to draw. Defaults to 20000. For digits
            and files, keep only the first `num_train` rows of the training split (a quick subset); it must
            not exceed the split. Defaults to the whole split.
        num_test: As `num_train`, for the test set. Defaults to 5000 for the toy sets, the whole split
            otherwise.
        seed: Non-negative integer. Toy sets: `two_moons` uses sklearn `random_state=seed` for train and
            `seed + 1` for test; the others use `np.random.default_rng([seed, 0])` for train and
            `[seed, 1]` for test. Digits and in-memory files: seeds the split permutation. Streamed files are
            split by row index and ignore it. Defaults to 0.
        header: CSV only. True: the first non-blank line is a header of column names. False: every line is
            data. None: a header when no cell of the first line is a number. Defaults to None.
        dtype: Float dtype of the returned rows. Defaults to `"float32"`.
        test_fraction: Digits and files: fraction of rows in the test set, in (0, 1); the test set gets
            `ceil(n * test_fraction)` rows. Ignored by the toy sets. Defaults to 0.2.
        stream_threshold_bytes: Files larger than this many bytes (shards: together) are streamed from disk
            through `tf.data` instead of loaded (see `Dataset.stream`). Defaults to 512 MiB.
        feature_key: TFRecord only: the feature of each `tf.train.Example` that holds the row (a
            `float_list` of the same length in every record). Defaults to `None`: the records' only float
            feature.

    Returns:
        A `Dataset`.

    Raises:
        DataError: For an unknown name, a missing, empty or malformed file (a non-numeric cell, NaN or
            infinity, ragged rows, an array that is not 2-D and numeric, fewer than 2 rows) or a bad option.
            In a streamed file the per-cell checks run while reading, and fail the `tf.data` iteration with
            `tf.errors.InvalidArgumentError` carrying the same message.

    Example:

        >>> load_dataset("digits").train.shape
        (1437, 64)
    """
    if not isinstance(spec, str):
        raise DataError(f"dataset spec must be a string such as 'two_moons' or 'csv:PATH', got {spec!r}")
    with checks.raising(DataError):
        np_dtype = _check_dtype(dtype)
        for name, count in (("num_train", num_train), ("num_test", num_test)):
            if count is not None:
                checks.integer(name, count, low=1)
        checks.integer("seed", seed, low=0, high=_MAX_SEED)
        checks.boolean("header", header, optional=True)
        _check_test_fraction(test_fraction)
        checks.integer("stream_threshold_bytes", stream_threshold_bytes, low=0)

    kind, sep, path = spec.partition(":")
    is_file = bool(sep) and kind in FILE_KINDS
    if header is not None and not (is_file and kind == "csv"):
        raise DataError(f"header applies only to 'csv:PATH' datasets, got header={header!r} for {spec!r}")
    if feature_key is not None and not (is_file and kind == "tfrecord"):
        raise DataError(f"feature_key applies only to 'tfrecord:PATH' datasets, got feature_key={feature_key!r} "
                        f"for {spec!r}")

    if spec == "two_moons":
        return _two_moons(num_train, num_test, seed, np_dtype)
    if spec in _TOY_SAMPLERS:
        return _toy(spec, num_train, num_test, seed, np_dtype)
    if spec == "digits":
        return _digits(num_train, num_test, seed, np_dtype, test_fraction)
    if is_file:
        if not path:
            raise DataError(f"{spec!r} names no file; expected '{kind}:PATH'")
        shards = _shards(kind, path)
        streamed = sum(os.path.getsize(full) for _, full in shards) > stream_threshold_bytes
        options = _FileOptions(
            spec=spec, path=path, full_path=shards[0][1], dtype=np_dtype, seed=seed, test_fraction=test_fraction,
            num_train=num_train, num_test=num_test, shards=tuple(shards),
        )
        if kind == "tfrecord":  # read by TensorFlow's record reader: streamed whatever the size
            return _load_tfrecord(options, feature_key)
        if kind == "csv":
            return _load_csv(options, header=header, streamed=streamed)
        return _load_npy(options, streamed=streamed)
    raise DataError(unknown_dataset(spec))


def as_tf_dataset(
    array_or_dataset: np.ndarray | tf.data.Dataset | Callable[[], tf.data.Dataset],
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None = None,
    shuffle_buffer_size: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches rows into a prefetching `tf.data` input pipeline.

    Args:
        array_or_dataset: A 2-D array `[n, d]` (e.g. `Dataset.train`), a `tf.data.Dataset` of rows, or a
            zero-argument callable returning one (e.g. `Dataset.stream`).
        batch_size: Rows per batch, positive.
        shuffle: Whether to shuffle the rows, anew each epoch.
        seed: Shuffle seed; the same seed gives the same sequence of epochs. Defaults to None (random).
        shuffle_buffer_size: Rows held by the shuffle buffer. Defaults to all rows of an array (a uniform
            shuffle) and 10000 rows for a streamed dataset.
        drop_remainder: Whether to drop a last batch smaller than `batch_size`. Defaults to False.

    Returns:
        A `tf.data.Dataset` of batches `[batch_size, d]`, prefetched with `tf.data.AUTOTUNE`.

    Raises:
        DataError: If the input is not one of the above or an option is out of range.

    Example:

        >>> batches = as_tf_dataset(np.zeros((10, 2), np.float32), batch_size=4, shuffle=False)
        >>> [int(b.shape[0]) for b in batches]
        [4, 4, 2]
    """
    with checks.raising(DataError):
        checks.integer("batch_size", batch_size, low=1)
        if seed is not None:
            checks.integer("seed", seed)
        if shuffle_buffer_size is not None:
            checks.integer("shuffle_buffer_size", shuffle_buffer_size, low=1)

    if isinstance(array_or_dataset, Dataset):
        raise DataError(
            f"as_tf_dataset takes rows, got the Dataset {array_or_dataset.name!r}; "
            "pass its .train (or .stream when streamed)"
        )
    if isinstance(array_or_dataset, np.ndarray):
        if array_or_dataset.ndim != 2 or array_or_dataset.shape[0] == 0:
            raise DataError(
                f"expected a 2-D array [rows, features] with at least one row, got shape {array_or_dataset.shape}"
            )
        ds = tf.data.Dataset.from_tensor_slices(array_or_dataset)
        default_buffer = array_or_dataset.shape[0]
    else:
        ds = array_or_dataset() if callable(array_or_dataset) else array_or_dataset
        if not isinstance(ds, tf.data.Dataset):
            raise DataError(
                "expected a 2-D numpy array, a tf.data.Dataset or a callable returning one, "
                f"got {type(array_or_dataset).__name__}"
            )
        default_buffer = _STREAM_SHUFFLE_BUFFER
    if shuffle:
        ds = ds.shuffle(shuffle_buffer_size or default_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------------------
# Argument checks.


def hold_out(
    make_rows: Callable[[], tf.data.Dataset], fraction: float, *, held_out: bool
) -> Callable[[], tf.data.Dataset]:
    """Splits a stream of rows by row index with the streamed test-split rule (see the module docstring).

    Args:
        make_rows: A zero-argument callable returning a `tf.data.Dataset` of rows, such as
            `Dataset.stream`.
        fraction: The fraction held out, in (0, 1): `ceil(n * fraction)` of `n` rows.
        held_out: True for the held-out rows (e.g. validation), False for the rest.

    Returns:
        A zero-argument callable returning the selected rows, in order.
    """
    _check_test_fraction(fraction)
    return lambda: _select_rows(make_rows().batch(_SELECT_BLOCK), fraction, want=held_out)


_SELECT_BLOCK = 8192  # rows selected at a time by the streamed split rule


def _select_rows(blocks: tf.data.Dataset, fraction: float, *, want: bool) -> tf.data.Dataset:
    """The rows of `blocks` (batches `[n, d]`, all but the last of `_SELECT_BLOCK` rows) that the streamed
    split rule puts on the `want` side (True: held out), one row at a time.

    The rule runs once per block, as vector ops: a `filter` per row costs a function call per row,
    which held a streamed run to ~15k rows/s.
    """
    # Plain TensorFlow ops: AutoGraph has nothing to convert (and would re-read this file's source).
    @tf.autograph.experimental.do_not_convert
    def select(i: tf.Tensor, block: tf.Tensor) -> tf.Tensor:
        index = i * _SELECT_BLOCK + tf.range(tf.shape(block, out_type=tf.int64)[0])
        return tf.boolean_mask(block, tf.equal(_is_test_row(index, fraction), want))

    return blocks.enumerate().map(select, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()


def stream_error(error: Exception) -> DataError:
    """The data problem behind a failed `tf.data` read of a streamed file, as a `DataError`.

    The checks inside a streamed pipeline fail the iteration with `tf.errors.InvalidArgumentError`,
    whose text carries the one-line message (an assertion's, or a `DataError` raised in a generator).
    """
    text = str(error)
    match = re.search(r"assertion failed: \[(.*?)\]", text, re.S) or re.search(r"DataError: (.*)", text)
    message = match.group(1) if match else text.strip().splitlines()[0]
    return DataError(message.replace("\\'", "'"))


def _check_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """`dtype` (a name, numpy dtype or type) as a numpy float32 or float64 dtype."""
    try:
        name: Any = np.dtype(dtype).name
    except TypeError:
        name = dtype
    checks.dtype(name if name in checks.DTYPES else dtype)
    return np.dtype(name)


def _check_test_fraction(test_fraction: float) -> None:
    with checks.raising(DataError):
        checks.number("test_fraction", test_fraction, positive=True, below=1)


# ----------------------------------------------------------------------------------------------------------
# Toy densities.


def _two_moons(num_train: int | None, num_test: int | None, seed: int, dtype: np.dtype) -> Dataset:
    from sklearn.datasets import make_moons  # pylint: disable=import-outside-toplevel

    n_train = num_train or _DEFAULT_NUM_TRAIN
    n_test = num_test or _DEFAULT_NUM_TEST
    train, train_labels = make_moons(n_samples=n_train, noise=0.05, random_state=seed)
    test, test_labels = make_moons(n_samples=n_test, noise=0.05, random_state=seed + 1)
    return Dataset(
        name="two_moons", train=train.astype(dtype), test=test.astype(dtype), event_size=2, integer_levels=None,
        description=(f"sklearn make_moons(noise=0.05): {n_train} train rows (random_state={seed}), "
                     f"{n_test} test rows (random_state={seed + 1})"),
        train_labels=train_labels.astype(np.int64), test_labels=test_labels.astype(np.int64), num_classes=2,
    )


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    # FFJORD: x1 uniform on [-4, 4); x2 uniform on the squares of the same colour, so
    # floor(x1 / 2) + floor(x2 / 2) is even.
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * 2


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    # FFJORD: an equal mixture of N(c_k, 0.5^2 I) with 8 centres c_k on the circle of radius 4, divided by 1.414.
    angles = np.arange(8) * (np.pi / 4)
    centers = 4.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points = rng.standard_normal((n, 2)) * 0.5 + centers[rng.integers(0, 8, n)]
    return points / 1.414


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    # FFJORD: 5 arms; radial N(1, 0.3^2) and tangential N(0, 0.1^2) noise, rotated by an angle growing as
    # 0.25 * exp(radius), times 2. Arms are balanced (row k on arm k % 5), rows shuffled.
    num_arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    arm_angles = np.linspace(0, 2 * np.pi, num_arms, endpoint=False)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    angles = arm_angles[np.arange(n) % num_arms] + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    rotated = np.stack(
        [features[:, 0] * cos + features[:, 1] * sin, -features[:, 0] * sin + features[:, 1] * cos], axis=1
    )
    return 2 * rng.permutation(rotated)


_TOY_SAMPLERS: dict[str, tuple[Callable[[np.random.Generator, int], np.ndarray], str]] = {
    "checkerboard": (_checkerboard, "FFJORD checkerboard: uniform on alternating 2x2 squares of [-4, 4]^2"),
    "eight_gaussians": (_eight_gaussians, "FFJORD 8 gaussians: N(c_k, 0.5^2) at 8 points of radius 4, / 1.414"),
    "pinwheel": (_pinwheel, "FFJORD pinwheel: 5 spiral arms"),
}


def _toy(name: str, num_train: int | None, num_test: int | None, seed: int, dtype: np.dtype) -> Dataset:
    sampler, what = _TOY_SAMPLERS[name]
    n_train = num_train or _DEFAULT_NUM_TRAIN
    n_test = num_test or _DEFAULT_NUM_TEST
    train = sampler(np.random.default_rng([seed, 0]), n_train).astype(dtype)
    test = sampler(np.random.default_rng([seed, 1]), n_test).astype(dtype)
    return Dataset(
        name=name, train=train, test=test, event_size=2, integer_levels=None,
        description=(f"{what}; {n_train} train rows (np.random.default_rng([{seed}, 0])), "
                     f"{n_test} test rows (default_rng([{seed}, 1]))"),
    )


def _digits(num_train: int | None, num_test: int | None, seed: int, dtype: np.dtype,
            test_fraction: float) -> Dataset:
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    digits = load_digits()
    rows = digits.data.astype(dtype)
    # The digit as a last column, split with its image, then taken off again.
    train, test = _seeded_split(np.concatenate([rows, digits.target[:, None].astype(dtype)], axis=1), "digits",
                                seed, test_fraction)
    train, test = _take(train, num_train, "num_train", "training", "digits"), \
        _take(test, num_test, "num_test", "test", "digits")
    return Dataset(
        name="digits", train=train[:, :-1], test=test[:, :-1], event_size=rows.shape[1],
        integer_levels=_DIGITS_LEVELS,
        description=(f"sklearn load_digits: 8x8 images, 64 pixels with integer values 0..16; seeded split "
                     f"(seed {seed}, test_fraction {test_fraction}): {len(train)} train, {len(test)} test rows"),
        train_labels=train[:, -1].astype(np.int64), test_labels=test[:, -1].astype(np.int64), num_classes=10,
    )


# ----------------------------------------------------------------------------------------------------------
# Splits shared by digits and files.


def _num_test_rows(num_rows: int, source: str, test_fraction: float) -> int:
    if num_rows < 2:
        raise DataError(f"{source} has {num_rows} data row(s); needs at least 2 rows to split into train and test")
    num_test = math.ceil(float(num_rows) * test_fraction)
    if num_test >= num_rows:
        raise DataError(
            f"test_fraction={test_fraction} leaves no training rows out of the {num_rows} rows of {source}; "
            f"expected at most {(num_rows - 1) / num_rows:.3g}"
        )
    return num_test


def _seeded_split(rows: np.ndarray, source: str, seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    num_test = _num_test_rows(len(rows), source, test_fraction)
    order = np.random.default_rng(seed).permutation(len(rows))
    return rows[order[num_test:]], rows[order[:num_test]]


def _is_test_row(row_index: np.ndarray | tf.Tensor, test_fraction: float) -> tf.Tensor:
    """The streamed split rule (see the module docstring), for numpy row indices and tensors alike."""
    i = tf.cast(row_index, tf.float64)
    return tf.math.ceil((i + 1.0) * test_fraction) > tf.math.ceil(i * test_fraction)


def _take(rows: np.ndarray, limit: int | None, option: str, split: str, source: str) -> np.ndarray:
    if limit is None:
        return rows
    if limit > len(rows):
        raise DataError(f"{option}={limit} exceeds the {len(rows)} {split} rows of {source}")
    return rows[:limit]


def _stream_count(available: int, limit: int | None, option: str, split: str, source: str) -> int:
    if limit is not None and limit > available:
        raise DataError(f"{option}={limit} exceeds the {available} {split} rows of {source}")
    return available if limit is None else limit


# ----------------------------------------------------------------------------------------------------------
# Files.


@dataclasses.dataclass(frozen=True)
class _FileOptions:
    spec: str
    path: str  # as the user wrote it, for messages
    full_path: str  # user-expanded, for opening: the first shard's
    dtype: np.dtype
    seed: int
    test_fraction: float
    num_train: int | None
    num_test: int | None
    shards: tuple[tuple[str, str], ...] = ()  # every file: (as matched, for messages; user-expanded)


def _file_dataset(options: _FileOptions, train: np.ndarray, test: np.ndarray, event_size: int,
                  what: str, columns: tuple[str, ...] | None = None) -> Dataset:
    train = _take(train, options.num_train, "num_train", "training", options.path)
    test = _take(test, options.num_test, "num_test", "test", options.path)
    return Dataset(
        name=options.spec, train=train, test=test, event_size=event_size, integer_levels=None,
        description=(f"{what}; seeded split (seed {options.seed}, test_fraction {options.test_fraction}): "
                     f"{len(train)} train, {len(test)} test rows"),
        columns=columns,
    )


def _streamed_dataset(options: _FileOptions, make_rows: Callable[[bool], tf.data.Dataset], num_rows: int,
                      event_size: int, what: str, columns: tuple[str, ...] | None = None) -> Dataset:
    total_test = _num_test_rows(num_rows, options.path, options.test_fraction)
    n_train = _stream_count(num_rows - total_test, options.num_train, "num_train", "training", options.path)
    n_test = _stream_count(total_test, options.num_test, "num_test", "test", options.path)

    def stream() -> tf.data.Dataset:
        return make_rows(False).take(n_train)

    def test_stream() -> tf.data.Dataset:
        return make_rows(True).take(n_test)

    return Dataset(
        name=options.spec, train=None, test=None, event_size=event_size, integer_levels=None,
        description=(f"{what}; streamed from disk, split by row index (test_fraction "
                     f"{options.test_fraction}): {n_train} train, {n_test} test rows"),
        stream=stream, test_stream=test_stream, num_train=n_train, num_test=n_test, columns=columns,
    )


def _non_finite_hint(dtype: np.dtype) -> str:
    return f" (expected finite {dtype.name} numbers; NaN and infinity are not allowed)"


# CSV -------------------------------------------------------------------------------------------------------


def _split_cells(raw: bytes) -> list[str]:
    """Cells of one line as the tf.data parser sees them: split on ',', ASCII-stripped, one pair of quotes."""
    cells = []
    for cell in raw.split(b","):
        cell = cell.strip()
        if len(cell) >= 2 and cell[:1] == b'"' and cell[-1:] == b'"':
            cell = cell[1:-1]
        cells.append(cell.decode("utf-8", errors="replace"))
    return cells


def _first_lines(full_path: str, count: int) -> list[tuple[int, list[str]]]:
    """The first `count` non-blank lines as (1-based line number, cells)."""
    lines = []
    with open(full_path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1:
                raw = raw.removeprefix(_BOM)
            if raw.strip():
                lines.append((line_no, _split_cells(raw)))
                if len(lines) == count:
                    break
    return lines


def _count_nonblank_lines(full_path: str) -> int:
    """Counts lines holding a non-whitespace byte, reading 16 MiB of lines at a time; lines end at b"\\n"."""
    count = 0
    with open(full_path, "rb") as f:
        while lines := f.readlines(16 * 2**20):
            count += sum(map(bool, map(bytes.strip, lines)))
    return count


def _load_csv(options: _FileOptions, *, header: bool | None, streamed: bool) -> Dataset:
    """One CSV file, or several shards read one after the other: the same columns (and header) in each."""
    path = options.shards[0][0]
    first = _first_lines(options.full_path, 2)
    if not first:
        raise DataError(f"{path} is empty; expected rows of comma-separated numbers")
    first_line, first_cells = first[0]
    numeric = [bool(_NUMBER_RE.fullmatch(cell)) for cell in first_cells]
    if header is None:
        header = not any(numeric)
        col = numeric.index(False) if not all(numeric) else None
        if any(numeric) and col is not None and first_cells[col]:  # not a header, not an empty cell
            raise DataError(
                f"non-numeric cell at row {first_line}, column {col + 1} of {path}: '{first_cells[col]}' "
                f"(expected a number; if row {first_line} is a header, pass header=True)"
            )
    if header and len(first) < 2 and len(options.shards) == 1:
        raise DataError(f"{path} has 0 data row(s); needs at least 2 rows to split into train and test")
    data_first = first[1] if header and len(first) > 1 else first[0]
    num_columns = len(first_cells) if header else len(data_first[1])
    if header and len(first) > 1 and len(first_cells) != len(data_first[1]):
        raise DataError(
            f"header row {first_line} of {path} has {len(first_cells)} names but row {data_first[0]} has "
            f"{len(data_first[1])} values; expected one name per column"
        )
    header_lines = [first_line if header else None]
    for shown, full in options.shards[1:]:  # each shard's first lines, before anything is read
        lines = _first_lines(full, 2)
        if not lines:
            raise DataError(f"shard {shown} of {options.spec} is empty; expected rows of comma-separated numbers")
        line_no, cells = lines[0]
        if header and cells != first_cells:
            raise DataError(f"shard {shown} of {options.spec} starts with row {line_no} {cells} but {path} with the "
                            f"header {first_cells}; expected the same header in every shard")
        width_line = lines[1] if header and len(lines) > 1 else None if header else lines[0]
        if width_line is not None and len(width_line[1]) != num_columns:
            raise DataError(f"row {width_line[0]} of shard {shown} has {len(width_line[1])} values, expected "
                            f"{num_columns} like the first data row of {path}")
        header_lines.append(line_no if header else None)
    many = len(options.shards) > 1
    what = (f"CSV {'shards' if many else 'file'} {options.path}" + (f" ({len(options.shards)} files)" if many else "")
            + f": {num_columns} columns" + (f", header row {first_line}" if header else ""))
    columns = tuple(first_cells) if header else None

    def blocks() -> Iterator[np.ndarray]:
        for (shown, full), header_line in zip(options.shards, header_lines):
            for chunk_line, lines in _csv_line_chunks(full, header_line):
                yield _parse_csv_lines(chunk_line, lines, shown, num_columns, options.dtype)

    if streamed:
        num_rows = sum(_count_nonblank_lines(full) - (1 if header else 0) for _, full in options.shards)
        return _streamed_dataset(options, _row_stream(blocks, num_columns, options), num_rows, num_columns, what,
                                 columns)
    chunks = list(blocks())
    rows = np.concatenate(chunks) if chunks else np.zeros((0, num_columns), options.dtype)
    train, test = _seeded_split(rows, options.path, options.seed, options.test_fraction)
    return _file_dataset(options, train, test, num_columns, what, columns)


def _csv_line_chunks(full_path: str, header_line: int | None) -> Iterator[tuple[int, list[bytes]]]:
    """The file's lines in chunks: (the 1-based number of the chunk's first line, its lines).

    Lines end at b"\n" (a "\r" before it is stripped with the cells); every line is kept, so that
    the numbers hold, with the header and a byte-order mark blanked out.
    """
    first = 1
    with open(full_path, "rb") as f:
        while lines := f.readlines(_CSV_CHUNK_BYTES):
            if first == 1:
                lines[0] = lines[0].removeprefix(_BOM)
            if header_line is not None and first <= header_line < first + len(lines):
                lines[header_line - first] = b""
            yield first, lines
            first += len(lines)


def _parse_csv_lines(first_line: int, lines: list[bytes], path: str, num_columns: int,
                     dtype: np.dtype) -> np.ndarray:
    """The data rows of `lines` (blank ones dropped) as values `[n, num_columns]`, or a `DataError`.

    The one CSV parser, in memory and streamed. `np.loadtxt` reads a clean chunk (it accepts a
    subset of what the cell rules below accept: no quotes, no whitespace-only lines, which are
    dropped before); a chunk it refuses, or whose values are not finite in `dtype`, is read cell by
    cell, which either reads it (quoted cells) or names the first bad row or cell with the line
    number a person opening the file would see.
    """
    rows = [line for line in lines if line.strip()]
    if not rows:
        return np.zeros((0, num_columns), dtype)
    # Lines split at b"\n", never inside a UTF-8 sequence: one decode of the chunk decodes each line.
    text = b"".join(rows).decode("utf-8", errors="replace").split("\n")[:len(rows)]
    try:
        values = np.loadtxt(text, delimiter=",", comments=None, ndmin=2, dtype=np.float64, quotechar=None)
        with np.errstate(over="ignore"):  # float32 overflow becomes inf, reported below
            values = values.astype(dtype)
        if values.shape == (len(rows), num_columns) and np.isfinite(values).all():
            return values
    except ValueError:
        pass
    values = np.empty((len(rows), num_columns), dtype)
    numbered = ((first_line + k, line) for k, line in enumerate(lines) if line.strip())
    for r, (line_no, raw) in enumerate(numbered):
        cells = _split_cells(raw)
        if len(cells) != num_columns:
            raise DataError(f"row {line_no} of {path} has {len(cells)} values, expected {num_columns} like the first "
                            "data row")
        for c, cell in enumerate(cells):
            where = f"at row {line_no}, column {c + 1} of {path}: '{cell}'"
            if not _NUMBER_RE.fullmatch(cell):
                raise DataError(f"non-numeric cell {where} (expected a number)")
            with np.errstate(over="ignore"):
                values[r, c] = float(cell)
            if not np.isfinite(values[r, c]):
                raise DataError(f"non-finite value {where}{_non_finite_hint(dtype)}")
    return values


def _row_stream(blocks: Callable[[], Iterator[np.ndarray]], num_columns: int,
                options: _FileOptions) -> Callable[[bool], tf.data.Dataset]:
    """`make_rows(want_test)`: a `tf.data.Dataset` of the test rows, or of the others, of a file read in blocks.

    A `DataError` raised while reading fails the iteration with `tf.errors.InvalidArgumentError`
    carrying its message (`stream_error` takes it back out).
    """
    def make_rows(want_test: bool) -> tf.data.Dataset:
        def selected() -> Iterator[np.ndarray]:
            start = 0
            for block in blocks():
                keep = _is_test_row(np.arange(start, start + len(block)), options.test_fraction).numpy() == want_test
                start += len(block)
                yield block[keep]

        signature = tf.TensorSpec([None, num_columns], tf.as_dtype(options.dtype))
        return tf.data.Dataset.from_generator(selected, output_signature=signature).unbatch()

    return make_rows


# NPY -------------------------------------------------------------------------------------------------------


def _open_npy(path: str, full_path: str) -> np.ndarray:
    """Memory-maps a .npy file after checking its header: reads no data, so it serves both paths."""
    with open(full_path, "rb") as f:
        magic = f.read(len(np.lib.format.MAGIC_PREFIX))
    if not magic:
        raise DataError(f"{path} is empty; expected a 2-D numeric array saved with np.save")
    if magic.startswith(b"PK\x03\x04"):
        raise DataError(f"{path} is an .npz archive; expected a single 2-D array saved with np.save")
    if magic != np.lib.format.MAGIC_PREFIX:
        raise DataError(f"{path} is not a valid .npy file (no .npy header); expected an array saved with np.save")
    try:
        array = np.load(full_path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        if "Python objects" in str(error):
            raise DataError(
                f"{path} holds Python objects (dtype object); expected a 2-D numeric array saved with np.save"
            ) from None
        raise DataError(f"{path} is not a valid .npy file ({error}); expected an array saved with np.save") from None
    if array.ndim != 2:
        raise DataError(
            f"{path} holds an array of shape {array.shape}; expected a 2-D array [rows, features] "
            "(reshape 1-D data with x.reshape(-1, 1))"
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DataError(f"{path} holds dtype {array.dtype}; expected a numeric (integer or float) array")
    if array.shape[1] == 0:
        raise DataError(f"{path} holds an array of shape {array.shape}; expected at least 1 feature column")
    return array


def _npy_non_finite(block: np.ndarray, first_row: int, path: str, dtype: np.dtype) -> str | None:
    bad = np.argwhere(~np.isfinite(block))
    if not len(bad):
        return None
    i, j = int(bad[0][0]) + first_row, int(bad[0][1])
    return (f"non-finite value at row {i + 1}, column {j + 1} of {path} (index [{i}, {j}]): "
            f"{block[i - first_row, j]}{_non_finite_hint(dtype)}")


def _load_npy(options: _FileOptions, *, streamed: bool) -> Dataset:
    """One .npy file, or several shards read one after the other: the same number of columns in each."""
    arrays = [_open_npy(shown, full) for shown, full in options.shards]  # every header, before any data
    num_columns = arrays[0].shape[1]
    for (shown, _), array in zip(options.shards[1:], arrays[1:]):
        if array.shape[1] != num_columns:
            raise DataError(f"shard {shown} holds an array of shape {array.shape}; expected {num_columns} columns "
                            f"like {options.shards[0][0]}")
    counts = [array.shape[0] for array in arrays]
    many = len(options.shards) > 1
    what = (f"NPY shards {options.path} ({len(arrays)} files): {sum(counts)} rows of {num_columns} columns" if many
            else f"NPY file {options.path}: array {arrays[0].shape} of {arrays[0].dtype}")
    del arrays  # each read maps the files anew, so no file handle outlives it
    chunk_rows = max(1, _NPY_CHUNK_BYTES // (num_columns * options.dtype.itemsize))

    def blocks() -> Iterator[np.ndarray]:
        for (shown, full), count in zip(options.shards, counts):
            for start, block in _npy_blocks(shown, full, count, chunk_rows):
                with np.errstate(over="ignore"):  # float32 overflow becomes inf, reported below
                    block = block.astype(options.dtype, copy=False)
                message = _npy_non_finite(block, start, shown, options.dtype)
                if message:
                    raise DataError(message)
                yield block

    if streamed:
        return _streamed_dataset(options, _row_stream(blocks, num_columns, options), sum(counts), num_columns, what)
    chunks = list(blocks())  # reads the files
    rows = chunks[0] if len(chunks) == 1 else np.concatenate(chunks) if chunks else np.zeros(
        (0, num_columns), options.dtype)
    train, test = _seeded_split(rows, options.path, options.seed, options.test_fraction)
    return _file_dataset(options, train, test, num_columns, what)


def _npy_blocks(shown: str, full: str, count: int, chunk_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """`(first row, rows)` of a .npy file, read `chunk_rows` at a time with plain reads.

    Not through a memory map: the pages a map touches count in the process's resident memory
    until the kernel takes them back, so a streamed pass over a large file would look like it
    held the file; read pages stay in the page cache, outside the process.
    """
    array = _open_npy(shown, full)
    dtype, fortran, columns = array.dtype, array.flags.f_contiguous and not array.flags.c_contiguous, array.shape[1]
    offset = array.offset
    del array
    if fortran:  # a column-major array: its rows are not contiguous on disk; read through the map
        rows = _open_npy(shown, full)
        for start in range(0, count, chunk_rows):
            yield start, np.array(rows[start:start + chunk_rows])
        return
    with open(full, "rb") as f:
        f.seek(offset)
        for start in range(0, count, chunk_rows):
            n = min(chunk_rows, count - start)
            block = np.fromfile(f, dtype=dtype, count=n * columns)
            if block.size != n * columns:
                raise DataError(f"{shown} ends after {start + block.size // columns} of its {count} rows; expected "
                                "the whole array its header describes")
            yield start, block.reshape(n, columns)


# Shards and TFRecord ---------------------------------------------------------------------------------------


def _shards(kind: str, path: str) -> list[tuple[str, str]]:
    """The files `path` names: itself, or the matches of a glob in sorted order, as `(shown, opened)`."""
    full = os.path.expanduser(path)
    if not glob.has_magic(path) or os.path.exists(full):  # a file named like a glob (x[1].csv) is that file
        if not os.path.exists(full):
            raise DataError(f"no such file: {path}")
        if os.path.isdir(full):
            raise DataError(f"no such file: {path} (it is a directory)")
        return [(path, full)]
    matches = sorted(glob.glob(full))
    if not matches:
        raise DataError(f"{kind}:{path} matches no file; expected a glob of {kind.upper()} shards such as "
                        f"'{kind}:data/part-*.{kind}'")
    for match in matches:
        if os.path.isdir(match):
            raise DataError(f"{kind}:{path} matches the directory {match}; expected files only")
    return [(match, match) for match in matches]


_RECORD_BATCH = 4096  # records checked at a time before training


def _load_tfrecord(options: _FileOptions, feature_key: str | None) -> Dataset:
    """TFRecord shards of `tf.train.Example`s whose feature `feature_key` holds a row of floats.

    Every record is read once here, file by file, before training: its feature present, a float
    list of the first record's length, finite; a corrupt record is found too. The count that
    pass gives sizes the streamed split.
    """
    first_shown, first_full = options.shards[0]
    try:
        first = next(iter(tf.data.TFRecordDataset(first_full).take(1)), None)
    except tf.errors.OpError as error:
        raise DataError(f"cannot read {first_shown} as TFRecord ({_first_line(error)}); expected a TFRecord "
                        "file of tf.train.Example records") from None
    if first is None:
        raise DataError(f"{first_shown} holds no record; expected tf.train.Example records")
    try:
        example = tf.train.Example.FromString(first.numpy())
    except Exception:  # pylint: disable=broad-except  # protobuf's DecodeError
        raise DataError(f"the first record of {first_shown} is not a tf.train.Example; expected tf.train.Example "
                        "records with a float feature per row") from None
    features = example.features.feature
    floats = sorted(name for name in features if features[name].WhichOneof("kind") == "float_list")
    if feature_key is None:
        if len(floats) != 1:
            raise DataError(f"the records of {first_shown} hold {len(floats)} float features ({', '.join(floats) or 'none'})"
                            "; expected feature_key (--feature-key) naming the one that holds the row")
        feature_key = floats[0]
    elif feature_key not in floats:
        held = ", ".join(f"{name} ({features[name].WhichOneof('kind')})" for name in sorted(features)) or "none"
        raise DataError(f"the first record of {first_shown} has no float feature {feature_key!r}; its features: "
                        f"{held}")
    num_columns = len(features[feature_key].float_list.value)
    if not num_columns:
        raise DataError(f"feature {feature_key!r} of the first record of {first_shown} is empty; expected the row's "
                        "values")
    spec = {feature_key: tf.io.RaggedFeature(tf.float32)}
    num_rows = 0
    for shown, full in options.shards:
        done = 0
        try:
            for batch in tf.data.TFRecordDataset(full).batch(_RECORD_BATCH):
                values = tf.io.parse_example(batch, spec)[feature_key]
                lengths = values.row_lengths().numpy()
                wrong = np.flatnonzero(lengths != num_columns)
                if wrong.size:
                    k = int(wrong[0])
                    raise DataError(f"record {done + k + 1} of {shown} holds {lengths[k]} values in feature "
                                    f"{feature_key!r}; expected {num_columns} like the first record of {first_shown}")
                finite = np.isfinite(values.flat_values.numpy().reshape(-1, num_columns)).all(axis=1)
                if not finite.all():
                    k = int(np.flatnonzero(~finite)[0])
                    raise DataError(f"non-finite value in record {done + k + 1} of {shown}, feature {feature_key!r}"
                                    f"{_non_finite_hint(np.dtype('float32'))}")
                done += len(lengths)
        except tf.errors.OpError as error:
            bad = done + _readable_records(full, done, spec)
            raise DataError(f"cannot read record {bad + 1} of {shown} ({_first_line(error)}); expected "
                            f"uncorrupted tf.train.Example records with a float feature {feature_key!r}") from None
        num_rows += done
    files = [full for _, full in options.shards]
    fixed = {feature_key: tf.io.FixedLenFeature([num_columns], tf.float32)}
    dtype = tf.as_dtype(options.dtype)

    @tf.autograph.experimental.do_not_convert
    def parse(batch: tf.Tensor) -> tf.Tensor:
        return tf.cast(tf.io.parse_example(batch, fixed)[feature_key], dtype)

    def make_rows(want_test: bool) -> tf.data.Dataset:
        records = tf.data.TFRecordDataset(files, num_parallel_reads=None).batch(_SELECT_BLOCK)
        return _select_rows(records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True),
                            options.test_fraction, want=want_test)

    many = len(files) > 1
    what = (f"TFRecord {'shards' if many else 'file'} {options.path}" + (f" ({len(files)} files)" if many else "")
            + f": feature {feature_key!r} of {num_columns} floats")
    return _streamed_dataset(options, make_rows, num_rows, num_columns, what)


def _readable_records(full: str, start: int, spec: dict[str, Any]) -> int:
    """How many records of `full` from record `start` on read and parse one at a time before one fails."""
    count = 0
    try:
        for record in tf.data.TFRecordDataset(full).skip(start):
            tf.io.parse_example(record[None], spec)
            count += 1
    except tf.errors.OpError:
        pass
    return count


def _first_line(error: Exception) -> str:
    """TensorFlow's error message without its function-node and op decorations."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\].*$", "", text.strip(), flags=re.S)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
