"""Sharded and record data: `csv:GLOB`, `npy:GLOB` and `tfrecord:GLOB` (tfp_realnvp.data), read,
split, checked shard by shard, and trained on and evaluated through `fit_flow`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfp_realnvp.data import DataError, load_dataset
from tfp_realnvp.examples import Examples
from tfp_realnvp.training import TrainingConfig, fit_flow

ROWS = np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
SHARDS = 4


def _example(values, **extra) -> bytes:
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=values)),
               "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])), **extra}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(directory: Path, kind: str, rows: np.ndarray = ROWS, shards: int = SHARDS) -> str:
    for k, part in enumerate(np.array_split(rows, shards)):
        path = directory / f"part-{k}.{kind}"
        if kind == "csv":
            np.savetxt(path, part, delimiter=",", header="a,b,c", comments="")
        elif kind == "npy":
            np.save(path, part)
        else:
            with tf.io.TFRecordWriter(str(path)) as writer:
                for row in part:
                    writer.write(_example(row))
    return f"{kind}:{directory}/part-*.{kind}"


def _rows(stream) -> np.ndarray:
    return np.concatenate(list(stream().batch(1000).as_numpy_iterator()))


def _sorted(rows: np.ndarray) -> np.ndarray:
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("kind", ["csv", "npy", "tfrecord"])
def test_shards_stream_every_row_split_by_row_index(tmp_path, kind):
    data = load_dataset(_write(tmp_path, kind), stream_threshold_bytes=0)
    assert data.streamed and (data.num_train, data.num_test) == (320, 80)
    assert f"({SHARDS} files)" in data.description
    train, test = _rows(data.stream), _rows(data.test_stream)
    # The shards in sorted order are the rows in order; row i is a test row by the streamed rule.
    is_test = np.ceil((np.arange(400) + 1) * 0.2) > np.ceil(np.arange(400) * 0.2)
    # float32 rows through savetxt's 18 digits, np.save or a float_list: exact; 1e-6 allows a last-bit parse.
    np.testing.assert_allclose(train, ROWS[~is_test], rtol=1e-6)
    np.testing.assert_allclose(test, ROWS[is_test], rtol=1e-6)


@pytest.mark.parametrize("kind", ["csv", "npy"])
def test_small_shards_load_into_memory_like_one_file(tmp_path, kind):
    data = load_dataset(_write(tmp_path, kind))
    assert not data.streamed and data.train.shape == (320, 3)
    np.testing.assert_allclose(_sorted(np.concatenate([data.train, data.test])), _sorted(ROWS), rtol=1e-6)  # as above


def test_tfrecord_feature_key_is_the_only_float_feature_or_named(tmp_path):
    spec = _write(tmp_path, "tfrecord")
    assert "feature 'x' of 3 floats" in load_dataset(spec).description
    with tf.io.TFRecordWriter(str(tmp_path / "two.tfrecord")) as writer:
        writer.write(_example([1.0, 2.0], y=tf.train.Feature(float_list=tf.train.FloatList(value=[3.0]))))
    with pytest.raises(DataError, match=r"hold 2 float features \(x, y\); expected feature_key \(--feature-key\)"):
        load_dataset(f"tfrecord:{tmp_path}/two.tfrecord")
    with pytest.raises(DataError, match=r"no float feature 'z'; its features: id \(int64_list\), x \(float_list\)"):
        load_dataset(spec, feature_key="z")
    with pytest.raises(DataError, match="no float feature 'id'"):
        load_dataset(spec, feature_key="id")
    with pytest.raises(DataError, match="feature_key applies only to 'tfrecord:PATH'"):
        load_dataset("two_moons", feature_key="x")


def _bad_csv_width(d: Path) -> str:
    spec = _write(d, "csv")
    np.savetxt(d / "part-2.csv", ROWS[:10, :2], delimiter=",", header="a,b", comments="")
    return spec


def _bad_csv_cell(d: Path) -> str:
    spec = _write(d, "csv")
    with open(d / "part-3.csv", "a") as f:
        f.write("1.0,oops,2.0\n")
    return spec


def _bad_npy_width(d: Path) -> str:
    spec = _write(d, "npy")
    np.save(d / "part-1.npy", ROWS[:10, :2])
    return spec


def _corrupt_record(d: Path) -> str:
    spec = _write(d, "tfrecord")
    raw = (d / "part-2.tfrecord").read_bytes()
    (d / "part-2.tfrecord").write_bytes(raw[:200] + bytes([raw[200] ^ 0xFF]) + raw[201:])
    return spec


def _short_record(d: Path) -> str:
    spec = _write(d, "tfrecord")
    with tf.io.TFRecordWriter(str(d / "part-9.tfrecord")) as writer:
        writer.write(_example([1.0, 2.0, 3.0]))
        writer.write(_example([1.0, 2.0]))
    return spec


def _int_record(d: Path) -> str:
    spec = _write(d, "tfrecord")
    with tf.io.TFRecordWriter(str(d / "part-9.tfrecord")) as writer:
        for _ in range(10):
            writer.write(_example([1.0, 2.0, 3.0]))
        writer.write(_example([1.0], x=tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2, 3]))))
    return spec


def _nan_record(d: Path) -> str:
    spec = _write(d, "tfrecord")
    with tf.io.TFRecordWriter(str(d / "part-9.tfrecord")) as writer:
        writer.write(_example([1.0, float("nan"), 3.0]))
    return spec


@pytest.mark.parametrize("make, pattern", [
    (lambda d: f"csv:{d}/none-*.csv", r"csv:.*/none-\*\.csv matches no file; expected a glob of CSV shards"),
    (lambda d: f"tfrecord:{d}/missing.tfrecord", r"no such file: .*/missing\.tfrecord"),
    (_bad_csv_width, r"shard .*part-2\.csv of csv:.* starts with row 1 \['a', 'b'\] but .*part-0\.csv with the header"),
    (_bad_npy_width, r"shard .*part-1\.npy holds an array of shape \(10, 2\); expected 3 columns like .*part-0\.npy"),
    (_corrupt_record, r"cannot read record \d+ of .*part-2\.tfrecord \(.*\); expected uncorrupted tf\.train\.Example"),
    (_short_record, r"record 2 of .*part-9\.tfrecord holds 2 values in feature 'x'; expected 3 like the first record"),
    (_nan_record, r"non-finite value in record 1 of .*part-9\.tfrecord, feature 'x'"),
    (_int_record, r"cannot read record 11 of .*part-9\.tfrecord \(.*\); expected uncorrupted"),
    (lambda d: (np.save(d / "empty.npy", np.zeros((0, 3), np.float32)), f"npy:{d}/empty.npy")[1], "0 data row"),
], ids=["glob-matches-nothing", "missing-file", "csv-shard-width", "npy-shard-width", "corrupt-record",
        "short-record", "nan-record", "int-record", "empty-npy"])
def test_a_bad_shard_is_named_before_training(tmp_path, make, pattern):
    spec = make(tmp_path)
    for threshold in (0, 2**30):  # streamed and in memory alike
        with pytest.raises(DataError, match=pattern):
            load_dataset(spec, stream_threshold_bytes=threshold)


def test_a_file_named_like_a_glob_is_that_file(tmp_path):
    np.save(tmp_path / "x[1].npy", ROWS)
    assert load_dataset(f"npy:{tmp_path}/x[1].npy").num_train == 320


def test_a_bad_cell_in_a_later_shard_is_named_while_streaming(tmp_path):
    data = load_dataset(_bad_csv_cell(tmp_path), stream_threshold_bytes=0)  # past the shards' first rows
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"non-numeric cell at row \d+, column 2 of .*part-3\.csv"):
        _rows(data.stream)


@pytest.mark.parametrize("kind", ["csv", "tfrecord"])
def test_sharded_data_trains_and_evaluates(tmp_path, kind):
    config = TrainingConfig.for_dataset(_write(tmp_path, kind), stream_above_mb=1e-6, epochs=2, batch_size=64,
                                        flow_options={"num_couplings": 2, "hidden_units": [16]}, patience=0,
                                        whiten=False)
    result = fit_flow(config, verbose=0)
    assert result.data.streamed and result.epochs_run == 2
    assert result.metrics["test"]["rows"] == 80
    # The standardisation was fitted in one streaming pass over every fitted row, of all shards.
    fit, _ = Examples(result.config, result.data).arrays("fit")
    assert len(fit) == result.metrics["train"]["rows"] > 200
    # The streaming pass sums in float64, numpy's mean of the float32 rows in float32 (pairwise): ~1e-7
    # apart; atol for entries whose mean is near 0.
    np.testing.assert_allclose(result.model.preprocessing.mean.numpy(), fit.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.model.preprocessing.std.numpy(), fit.std(axis=0), rtol=1e-5)
    assert np.isfinite(result.metrics["test"]["nll"]) and result.metrics["test"]["nll"] < 5.0
