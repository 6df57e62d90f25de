"""Tests for tfp_realnvp.data: built-in datasets, CSV/NPY loading, validation, streaming, input pipelines."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits, make_moons

from tfp_realnvp import data as data_module
from tfp_realnvp.data import BUILTIN_DATASETS, DataError, Dataset, as_tf_dataset, load_dataset

TOY_DATASETS = ("two_moons", "checkerboard", "eight_gaussians", "pinwheel")


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    """Rows in lexicographic order, to compare two arrays as multisets of rows."""
    return rows[np.lexsort(rows.T[::-1])]


def _collect(stream: Callable[[], tf.data.Dataset]) -> np.ndarray:
    return np.stack(list(stream().as_numpy_iterator()))


def _write_csv(path: Path, rows: np.ndarray, header: str | None = None) -> Path:
    lines = ([header] if header else []) + [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------
# Built-in datasets.


def test_builtin_names():
    assert BUILTIN_DATASETS == ("two_moons", "checkerboard", "eight_gaussians", "pinwheel", "digits")


def test_two_moons_default_is_the_benchmark_recipe():
    data = load_dataset("two_moons")
    np.testing.assert_array_equal(
        data.train, make_moons(n_samples=20000, noise=0.05, random_state=0)[0].astype(np.float32)
    )
    np.testing.assert_array_equal(
        data.test, make_moons(n_samples=5000, noise=0.05, random_state=1)[0].astype(np.float32)
    )
    assert (data.name, data.event_size, data.integer_levels) == ("two_moons", 2, None)
    assert (data.num_train, data.num_test, data.streamed) == (20000, 5000, False)


def test_two_moons_seed_and_counts_shift_the_recipe():
    data = load_dataset("two_moons", num_train=300, num_test=100, seed=7, dtype="float64")
    np.testing.assert_array_equal(data.train, make_moons(n_samples=300, noise=0.05, random_state=7)[0])
    np.testing.assert_array_equal(data.test, make_moons(n_samples=100, noise=0.05, random_state=8)[0])


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_same_seed_same_data_other_seed_other_data(name):
    first = load_dataset(name, num_train=500, num_test=200, seed=3)
    again = load_dataset(name, num_train=500, num_test=200, seed=3)
    other = load_dataset(name, num_train=500, num_test=200, seed=4)
    np.testing.assert_array_equal(first.train, again.train)
    np.testing.assert_array_equal(first.test, again.test)
    assert not np.array_equal(first.train, other.train)
    assert not np.array_equal(first.test, other.test)
    assert not np.array_equal(first.train[:200], first.test)  # train and test come from different seeds


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_shapes_and_dtypes(name, dtype):
    data = load_dataset(name, dtype=dtype)
    assert data.train.shape == (20000, 2) and data.test.shape == (5000, 2)
    assert data.train.dtype == dtype and data.test.dtype == dtype
    assert (data.event_size, data.integer_levels, data.stream) == (2, None, None)
    assert np.isfinite(data.train).all()


def test_checkerboard_lies_on_the_dark_squares():
    x = load_dataset("checkerboard").train
    assert (x >= -4).all() and (x < 4).all()
    squares = np.floor(x / 2).astype(int)
    assert ((squares[:, 0] + squares[:, 1]) % 2 == 0).all()
    assert len({tuple(s) for s in squares}) == 8  # all 8 dark squares of the 4x4 board are used


def test_eight_gaussians_has_eight_equal_modes():
    x = load_dataset("eight_gaussians").train
    angles = np.arange(8) * np.pi / 4
    centers = 4 / 1.414 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    distance = np.linalg.norm(x[:, None, :] - centers[None], axis=-1)
    nearest = distance.argmin(axis=1)
    assert distance.min(axis=1).max() < 6 * 0.5 / 1.414  # 6 standard deviations: ~2e-8 chance per point
    counts = np.bincount(nearest, minlength=8)
    assert (np.abs(counts / len(x) - 1 / 8) < 0.01).all()  # binomial sd of a share at n=20000: ~0.0023


def test_pinwheel_has_five_symmetric_arms():
    x = load_dataset("pinwheel").train
    radius = np.linalg.norm(x, axis=1)
    assert abs(radius.mean() - 2.0) < 0.1  # 2 * |(1 + 0.3 z1, 0.1 z2)| has mean ~2.01
    assert np.abs(x.mean(axis=0)).max() < 0.05  # 5-fold symmetry: sd of the mean ~0.01
    rotated = x @ np.array([[np.cos(2 * np.pi / 5), -np.sin(2 * np.pi / 5)],
                            [np.sin(2 * np.pi / 5), np.cos(2 * np.pi / 5)]])
    histogram = lambda p: np.histogram2d(p[:, 0], p[:, 1], bins=8, range=[[-4, 4], [-4, 4]])[0] / len(p)
    assert np.abs(histogram(x) - histogram(rotated)).max() < 0.01  # rotating by 72 degrees keeps the density


def test_datasets_of_classes_carry_their_labels():
    from sklearn.datasets import load_digits, make_moons

    moons = load_dataset("two_moons", num_train=300, num_test=100, seed=2)
    x, y = make_moons(300, noise=0.05, random_state=2)
    np.testing.assert_array_equal(moons.train_labels, y)
    assert moons.num_classes == 2 and moons.test_labels.shape == (100,)
    digits = load_dataset("digits")
    images, labels = load_digits(return_X_y=True)
    # Each image keeps its own digit through the seeded split.
    for row, label in zip(digits.test[:20], digits.test_labels[:20]):
        matches = np.flatnonzero((images == row).all(axis=1))
        assert label in labels[matches]
    assert digits.num_classes == 10 and len(digits.train_labels) == len(digits.train)
    assert load_dataset("checkerboard", num_train=10, num_test=10).train_labels is None


def test_digits_shapes_levels_and_split():
    data = load_dataset("digits")
    assert data.train.shape == (1437, 64) and data.test.shape == (360, 64)  # test: ceil(1797 * 0.2)
    assert (data.event_size, data.integer_levels, data.train.dtype) == (64, 17, np.float32)
    both = np.concatenate([data.train, data.test])
    np.testing.assert_array_equal(both, np.round(both))  # still integers: dequantizing is the model's job
    assert both.min() == 0 and both.max() == 16
    np.testing.assert_array_equal(_sorted_rows(both), _sorted_rows(load_digits().data.astype(np.float32)))
    np.testing.assert_array_equal(load_dataset("digits").train, data.train)
    assert not np.array_equal(load_dataset("digits", seed=1).train, data.train)
    assert load_dataset("digits", num_train=100, num_test=10, test_fraction=0.5).train.shape == (100, 64)


# ---------------------------------------------------------------------------------------------------------
# User files.


@pytest.fixture(name="rows")
def fixture_rows() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(23, 3))


def test_csv_with_auto_detected_header(tmp_path, rows):
    path = _write_csv(tmp_path / "x.csv", rows, header="a,b,c")
    data = load_dataset(f"csv:{path}")
    assert data.train.shape == (18, 3) and data.test.shape == (5, 3)  # test: ceil(23 * 0.2) = 5
    assert (data.name, data.event_size, data.integer_levels) == (f"csv:{path}", 3, None)
    assert data.train.dtype == np.float32
    np.testing.assert_array_equal(
        _sorted_rows(np.concatenate([data.train, data.test])), _sorted_rows(rows.astype(np.float32))
    )


def test_csv_without_header_keeps_every_row(tmp_path, rows):
    path = _write_csv(tmp_path / "x.csv", rows)
    data = load_dataset(f"csv:{path}", dtype="float64")
    np.testing.assert_array_equal(_sorted_rows(np.concatenate([data.train, data.test])), _sorted_rows(rows))


def test_csv_forced_header_drops_the_first_row(tmp_path, rows):
    path = _write_csv(tmp_path / "x.csv", rows)
    data = load_dataset(f"csv:{path}", header=True, dtype="float64")
    np.testing.assert_array_equal(
        _sorted_rows(np.concatenate([data.train, data.test])), _sorted_rows(rows[1:])
    )


def test_csv_split_is_seeded(tmp_path, rows):
    path = _write_csv(tmp_path / "x.csv", rows)
    first = load_dataset(f"csv:{path}", seed=5)
    np.testing.assert_array_equal(load_dataset(f"csv:{path}", seed=5).test, first.test)
    assert not np.array_equal(load_dataset(f"csv:{path}", seed=6).test, first.test)
    assert load_dataset(f"csv:{path}", test_fraction=0.5).test.shape == (12, 3)  # ceil(11.5)


def test_csv_integer_data_stays_continuous(tmp_path):
    path = tmp_path / "ints.csv"
    path.write_text("0,1\n2,3\n4,5\n")
    data = load_dataset(f"csv:{path}")
    assert data.integer_levels is None


def test_csv_tolerates_blank_lines_quotes_crlf_and_bom(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_bytes(b'\xef\xbb\xbf"x","y"\r\n 1 ,"2"\r\n  \r\n\r\n3,4e0\r\n+.5,-inf\r\n'.replace(b"-inf", b"-6"))
    data = load_dataset(f"csv:{path}", dtype="float64", test_fraction=0.3)
    np.testing.assert_array_equal(
        _sorted_rows(np.concatenate([data.train, data.test])), [[0.5, -6.0], [1.0, 2.0], [3.0, 4.0]]
    )


def test_csv_unterminated_quote_is_a_non_numeric_cell(tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text('1,2\n3,"4\n5,6\n')  # an unterminated quote: np.loadtxt alone would read 4
    with pytest.raises(DataError, match=r"non-numeric cell at row 2, column 2 of .*: '\"4'"):
        load_dataset(f"csv:{path}")


def test_npy_loads_integer_arrays_as_continuous_floats(tmp_path):
    array = np.arange(30, dtype=np.int64).reshape(10, 3)
    np.save(tmp_path / "x.npy", array)
    data = load_dataset(f"npy:{tmp_path / 'x.npy'}")
    assert data.train.shape == (8, 3) and data.test.shape == (2, 3)
    assert (data.train.dtype, data.event_size, data.integer_levels) == (np.float32, 3, None)
    np.testing.assert_array_equal(_sorted_rows(np.concatenate([data.train, data.test])), array)


# Each bad file: (id, file name, content: bytes for text, a callable saving to the path for .npy,
# load_dataset options, message pattern with {path} for the escaped path).
_BAD_FILES = [
    ("non-numeric cell", "x.csv", b"a,b\n1,2\n\n3, x \n4,5\n", {},
     r"non-numeric cell at row 4, column 2 of {path}: 'x' \(expected a number\)"),
    ("empty cell", "x.csv", b"1,2\n3,\n", {}, r"non-numeric cell at row 2, column 2 of {path}: ''"),
    ("trailing comma", "x.csv", b"1,2,\n3,4,\n", {},
     r"non-numeric cell at row 1, column 3 of {path}: '' \(expected a number\)$"),
    ("nan", "x.csv", b"1,2\n3,nan\n", {},
     r"non-finite value at row 2, column 2 of {path}: 'nan' \(expected finite float32 numbers; NaN and"),
    ("infinity", "x.csv", b"1,2\n-inf,3\n", {}, r"non-finite value at row 2, column 1 of {path}: '-inf'"),
    ("float32 overflow", "x.csv", b"1,2\n3,1e39\n", {}, r"non-finite value at row 2, column 2 of {path}: '1e39'"),
    ("ragged", "x.csv", b"1,2,3\n4,5\n", {}, r"row 2 of {path} has 2 values, expected 3 like the first data row"),
    ("single row", "x.csv", b"1,2\n", {}, r"{path} has 1 data row\(s\); needs at least 2 rows"),
    ("header only", "x.csv", b"a,b\n", {}, r"{path} has 0 data row\(s\); needs at least 2 rows"),
    ("empty csv", "x.csv", b"", {}, r"{path} is empty; expected rows of comma-separated numbers"),
    ("blank csv", "x.csv", b"\n  \n", {}, r"{path} is empty; expected rows of comma-separated numbers"),
    ("mixed first row", "x.csv", b"1,x\n2,3\n", {},
     r"non-numeric cell at row 1, column 2 of {path}: 'x' \(expected a number; if row 1 is a header, pass "
     r"header=True\)"),
    ("header=False on a header", "x.csv", b"a,b\n1,2\n3,4\n", {"header": False},
     r"non-numeric cell at row 1, column 1 of {path}: 'a'"),
    ("header width", "x.csv", b"a,b,c\n1,2\n3,4\n", {},
     r"header row 1 of {path} has 3 names but row 2 has 2 values; expected one name per column"),
    ("no training rows", "x.csv", b"1,2\n3,4\n", {"test_fraction": 0.6},
     r"test_fraction=0.6 leaves no training rows out of the 2 rows of {path}; expected at most 0.5"),
    ("num_train too large", "x.csv", b"1\n2\n3\n4\n5\n", {"num_train": 5},
     r"num_train=5 exceeds the 4 training rows of {path}"),
    ("npy 1-D", "x.npy", lambda p: np.save(p, np.zeros(5)), {},
     r"{path} holds an array of shape \(5,\); expected a 2-D array \[rows, features\]"),
    ("npy 3-D", "x.npy", lambda p: np.save(p, np.zeros((2, 2, 2))), {},
     r"{path} holds an array of shape \(2, 2, 2\); expected a 2-D array"),
    ("npy strings", "x.npy", lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])), {},
     r"{path} holds dtype <U1; expected a numeric \(integer or float\) array"),
    ("npy bool", "x.npy", lambda p: np.save(p, np.ones((3, 2), bool)), {},
     r"{path} holds dtype bool; expected a numeric"),
    ("npy objects", "x.npy", lambda p: np.save(p, np.array([[1, None]], dtype=object), allow_pickle=True), {},
     r"{path} holds Python objects \(dtype object\); expected a 2-D numeric array"),
    ("npy no columns", "x.npy", lambda p: np.save(p, np.zeros((4, 0))), {},
     r"{path} holds an array of shape \(4, 0\); expected at least 1 feature column"),
    ("npy nan", "x.npy", lambda p: np.save(p, np.where(np.arange(8).reshape(4, 2) == 5, np.nan, 1.0)), {},
     r"non-finite value at row 3, column 2 of {path} \(index \[2, 1\]\): nan \(expected finite float32"),
    ("npy single row", "x.npy", lambda p: np.save(p, np.zeros((1, 3))), {},
     r"{path} has 1 data row\(s\); needs at least 2 rows"),
    ("npy empty", "x.npy", b"", {}, r"{path} is empty; expected a 2-D numeric array saved with np.save"),
    ("npy text", "x.npy", b"1,2\n3,4\n", {},
     r"{path} is not a valid .npy file \(no .npy header\); expected an array saved with np.save"),
    ("npy truncated", "x.npy", b"\x93NUMPY\x01\x00garbage", {},
     r"{path} is not a valid .npy file \(EOF: reading array header.*\); expected an array saved with np.save"),
    ("npz", "x.npy", lambda p: np.savez(p, a=np.zeros((2, 2))), {}, r"{path} is an .npz archive; expected a single"),
]


@pytest.mark.parametrize("file_name, content, options, pattern",
                         [case[1:] for case in _BAD_FILES], ids=[case[0] for case in _BAD_FILES])
def test_bad_file_raises_data_error(tmp_path, file_name, content, options, pattern):
    path = tmp_path / file_name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with open(path, "wb") as f:  # a file object, so np.savez keeps the .npy name
            content(f)
    kind = file_name.rsplit(".", 1)[1]
    with pytest.raises(DataError, match=pattern.format(path=re.escape(str(path)))):
        load_dataset(f"{kind}:{path}", **options)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=f"^no such file: {re.escape(str(tmp_path / 'nope.csv'))}$"):
        load_dataset(f"csv:{tmp_path / 'nope.csv'}")
    with pytest.raises(DataError, match=f"^no such file: {re.escape(str(tmp_path))} \\(it is a directory\\)$"):
        load_dataset(f"npy:{tmp_path}")
    with pytest.raises(DataError, match="'csv:' names no file; expected 'csv:PATH'"):
        load_dataset("csv:")


def test_unknown_name_lists_the_valid_ones():
    expected = ("unknown dataset 'moons'; expected one of two_moons, checkerboard, eight_gaussians, pinwheel, "
                "digits, or 'csv:PATH' / 'npy:PATH' / 'tfrecord:PATH' (a file or a glob of shards) for your own data "
                "(did you mean 'two_moons'?)")
    with pytest.raises(DataError, match=f"^{re.escape(expected)}$"):
        load_dataset("moons")
    with pytest.raises(DataError, match=r"for your own data$"):  # nothing close: no suggestion
        load_dataset("cifar10")
    with pytest.raises(DataError, match=re.escape("(did you mean 'csv:data.csv'?)")):
        load_dataset("data.csv")
    with pytest.raises(DataError, match=re.escape("(did you mean 'npy:x.NPY'?)")):
        load_dataset("x.NPY")
    with pytest.raises(DataError, match=re.escape("(did you mean 'csv:x.tsv'?)")):
        load_dataset("x.tsv")


@pytest.mark.parametrize("options, pattern", [
    ({"num_train": 0}, r"num_train must be an integer >= 1; got 0"),
    ({"num_test": 2.5}, r"num_test must be an integer >= 1; got 2.5"),
    ({"seed": -1}, r"seed must be an integer in \[0, 4294967294\]; got -1"),
    ({"seed": True}, r"seed must be an integer in \[0, 4294967294\]; got True"),
    ({"dtype": "int32"}, r"dtype must be 'float32' or 'float64'; got 'int32'"),
    ({"dtype": "no such dtype"}, r"dtype must be 'float32' or 'float64'; got 'no such dtype'"),
    ({"header": "yes"}, r"header must be True, False or None; got 'yes'"),
    ({"header": True}, r"header applies only to 'csv:PATH' datasets, got header=True for 'two_moons'"),
    ({"test_fraction": 1.0}, r"test_fraction must be a finite number in \(0, 1\); got 1.0"),
    ({"test_fraction": 0}, r"test_fraction must be a finite number in \(0, 1\); got 0"),
    ({"stream_threshold_bytes": -1}, r"stream_threshold_bytes must be an integer >= 0; got -1"),
])
def test_bad_option_raises_data_error(options, pattern):
    with pytest.raises(DataError, match=pattern):
        load_dataset("two_moons", **options)


def test_bad_spec_and_digits_subset_too_large():
    with pytest.raises(DataError, match=r"dataset spec must be a string such as 'two_moons' or 'csv:PATH', got 3"):
        load_dataset(3)
    with pytest.raises(DataError, match=r"num_train=2000 exceeds the 1437 training rows of digits"):
        load_dataset("digits", num_train=2000)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------------------------------------------------
# Streaming large files.


def test_streamed_csv_yields_the_rows_of_the_in_memory_path(tmp_path, rows):
    path = _write_csv(tmp_path / "x.csv", rows, header="a,b,c")
    with open(path, "a") as f:
        f.write("\n")  # a trailing blank line, skipped by both paths
    in_memory = load_dataset(f"csv:{path}")
    streamed = load_dataset(f"csv:{path}", stream_threshold_bytes=16)
    assert streamed.streamed and streamed.train is None and streamed.test is None
    assert (streamed.num_train, streamed.num_test, streamed.event_size) == (18, 5, 3)
    assert streamed.stream().element_spec == tf.TensorSpec([3], tf.float32)
    train, test = _collect(streamed.stream), _collect(streamed.test_stream)
    expected = rows.astype(np.float32)
    is_test = np.arange(len(rows)) % 5 == 0  # test_fraction 0.2: data rows 0, 5, 10, ...
    np.testing.assert_array_equal(test, expected[is_test])
    np.testing.assert_array_equal(train, expected[~is_test])
    np.testing.assert_array_equal(
        _sorted_rows(np.concatenate([train, test])),
        _sorted_rows(np.concatenate([in_memory.train, in_memory.test])),
    )


def test_streamed_npy_yields_the_rows_of_the_in_memory_path(tmp_path, rows):
    np.save(tmp_path / "x.npy", rows)
    spec = f"npy:{tmp_path / 'x.npy'}"
    in_memory = load_dataset(spec, dtype="float64")
    streamed = load_dataset(spec, dtype="float64", stream_threshold_bytes=16, num_test=3)
    assert streamed.train is None and (streamed.num_train, streamed.num_test) == (18, 3)
    train, test = _collect(streamed.stream), _collect(streamed.test_stream)
    is_test = np.arange(len(rows)) % 5 == 0
    np.testing.assert_array_equal(train, rows[~is_test])
    np.testing.assert_array_equal(test, rows[is_test][:3])  # num_test keeps the first test rows
    np.testing.assert_array_equal(
        _sorted_rows(np.concatenate([train, test, rows[is_test][3:]])),
        _sorted_rows(np.concatenate([in_memory.train, in_memory.test])),
    )


def test_streamed_csv_reports_bad_cells_while_reading(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,2\n\n3,x\n4,5\n")
    with pytest.raises(DataError) as in_memory:
        load_dataset(f"csv:{path}")
    streamed = load_dataset(f"csv:{path}", stream_threshold_bytes=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"non-numeric cell at row 3, column 2") as error:
        _collect(streamed.stream)
    assert str(in_memory.value) in error.value.message  # the one parser's message, as in memory


def test_streamed_npy_reports_non_finite_values_while_reading(tmp_path):
    array = np.ones((6, 2))
    array[4, 0] = np.inf
    np.save(tmp_path / "x.npy", array)
    streamed = load_dataset(f"npy:{tmp_path / 'x.npy'}", stream_threshold_bytes=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"non-finite value at row 5, column 1 of .*: inf"):
        _collect(streamed.stream)


def test_streamed_files_check_row_counts_eagerly(tmp_path):
    (tmp_path / "one.csv").write_text("a,b\n1,2\n\n")
    with pytest.raises(DataError, match=r"has 1 data row\(s\); needs at least 2 rows"):
        load_dataset(f"csv:{tmp_path / 'one.csv'}", stream_threshold_bytes=0)
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    with pytest.raises(DataError, match=r"num_train=9 exceeds the 8 training rows of"):
        load_dataset(f"npy:{tmp_path / 'x.npy'}", stream_threshold_bytes=0, num_train=9)


def test_streamed_split_rule_gives_ceil_n_times_fraction_test_rows():
    for test_fraction in (0.1, 0.2, 0.25, 1 / 3, 0.5, 0.7, 0.9):
        for n in range(1, 60):
            index = np.arange(n)
            is_test = data_module._is_test_row(index, test_fraction).numpy()  # pylint: disable=protected-access
            assert is_test.sum() == math.ceil(n * test_fraction), (n, test_fraction)


# ---------------------------------------------------------------------------------------------------------
# Dataset and input pipelines.


def test_dataset_is_frozen_and_counts_its_rows():
    data = Dataset(name="n", train=np.zeros((4, 2)), test=np.zeros((3, 2)), event_size=2, integer_levels=None,
                   description="d")
    assert (data.num_train, data.num_test, data.streamed) == (4, 3, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.name = "other"


def test_as_tf_dataset_batches_in_order_without_shuffle():
    array = np.arange(20, dtype=np.float32).reshape(10, 2)
    batches = list(as_tf_dataset(array, batch_size=4, shuffle=False).as_numpy_iterator())
    assert [b.shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    np.testing.assert_array_equal(np.concatenate(batches), array)
    dropped = list(as_tf_dataset(array, batch_size=4, shuffle=False, drop_remainder=True))
    assert [b.shape[0] for b in dropped] == [4, 4]


def test_as_tf_dataset_shuffles_reproducibly():
    array = np.arange(200, dtype=np.float32).reshape(100, 2)
    first = np.concatenate(list(as_tf_dataset(array, batch_size=32, shuffle=True, seed=1).as_numpy_iterator()))
    again = np.concatenate(list(as_tf_dataset(array, batch_size=32, shuffle=True, seed=1).as_numpy_iterator()))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, array)
    np.testing.assert_array_equal(_sorted_rows(first), array)


def test_as_tf_dataset_batches_a_stream(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(40, dtype=np.float32).reshape(20, 2))
    streamed = load_dataset(f"npy:{tmp_path / 'x.npy'}", stream_threshold_bytes=0)
    batches = list(as_tf_dataset(streamed.stream, batch_size=5, shuffle=True, seed=0).as_numpy_iterator())
    assert [b.shape for b in batches] == [(5, 2)] * 3 + [(1, 2)]  # 16 training rows
    np.testing.assert_array_equal(_sorted_rows(np.concatenate(batches)), _collect(streamed.stream))


@pytest.mark.parametrize("rows_in, options, pattern", [
    (np.zeros((4, 2)), {"batch_size": 0}, r"batch_size must be an integer >= 1; got 0"),
    (np.zeros((4, 2)), {"batch_size": 2, "seed": 1.5}, r"seed must be an integer; got 1.5"),
    (np.zeros((4, 2)), {"batch_size": 2, "shuffle_buffer_size": 0},
     r"shuffle_buffer_size must be an integer >= 1; got 0"),
    (np.zeros(4), {"batch_size": 2},
     r"expected a 2-D array \[rows, features\] with at least one row, got shape \(4,\)"),
    ("rows", {"batch_size": 2},
     r"expected a 2-D numpy array, a tf.data.Dataset or a callable returning one, got str"),
    (Dataset(name="toy", train=np.zeros((2, 2)), test=np.zeros((2, 2)), event_size=2, integer_levels=None,
             description=""), {"batch_size": 2},
     r"as_tf_dataset takes rows, got the Dataset 'toy'; pass its .train \(or .stream when streamed\)"),
])
def test_as_tf_dataset_rejects_bad_input(rows_in, options, pattern):
    with pytest.raises(DataError, match=pattern):
        as_tf_dataset(rows_in, shuffle=False, **options)
