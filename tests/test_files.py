"""files.py: a file or a version folder appears whole or not at all, and nothing is overwritten."""

from __future__ import annotations

import pytest

from tfp_realnvp import files


def _fail(path):
    path.write_text("half")
    raise RuntimeError("the write failed")


def test_write_new_writes_once_and_never_over_a_file(tmp_path):
    target = tmp_path / "a.txt"
    assert files.write_new(target, lambda p: p.write_text("first")) == target
    assert target.read_text() == "first"
    with pytest.raises(FileExistsError, match=r"a.txt already exists; not overwriting it"):
        files.write_new(target, lambda p: p.write_text("second"))
    with pytest.raises(FileExistsError, match="already exists"):
        files.check_new(target)
    assert target.read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="the write failed"):
        files.write_new(tmp_path / "b.txt", _fail)
    assert not any(tmp_path.iterdir())  # neither the file nor its temporary


def test_replace_swaps_the_whole_file_or_keeps_the_old(tmp_path):
    target = tmp_path / "state.json"
    files.replace(target, lambda p: p.write_text("old"))
    files.replace(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        files.replace(target, _fail)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_versions_are_folders_named_by_ascii_digits(tmp_path):
    assert files.versions(tmp_path / "missing") == {}
    for name in ("1", "007", "10", "x2", ".tmp-3-abc", "٣"):  # the last: an Arabic-Indic digit
        (tmp_path / name).mkdir()
    assert files.versions(tmp_path) == {1: tmp_path / "1", 7: tmp_path / "007", 10: tmp_path / "10"}


def test_publish_version_takes_the_next_number_and_refuses_a_taken_one(tmp_path):
    first = files.publish_version(tmp_path, lambda d: (d / "saved_model.pb").write_text("1"))
    assert first == tmp_path / "1" and (first / "saved_model.pb").read_text() == "1"
    ran = []
    with pytest.raises(FileExistsError, match="version 1 already exists in"):
        files.publish_version(tmp_path, ran.append, version=1)
    assert not ran  # refused before the (expensive) write
    assert files.publish_version(tmp_path, lambda d: None, version=5) == tmp_path / "5"
    assert files.publish_version(tmp_path, lambda d: None) == tmp_path / "6"


def test_publish_version_takes_the_next_free_number_when_another_writer_wins(tmp_path):
    def write(folder):
        (folder / "saved_model.pb").write_text("mine")
        (tmp_path / "1").mkdir()  # another writer publishes 1 meanwhile
        (tmp_path / "1" / "saved_model.pb").write_text("theirs")

    assert files.publish_version(tmp_path, write) == tmp_path / "2"
    assert (tmp_path / "1" / "saved_model.pb").read_text() == "theirs"
    assert (tmp_path / "2" / "saved_model.pb").read_text() == "mine"


def test_a_failed_version_leaves_no_folder(tmp_path):
    with pytest.raises(RuntimeError):
        files.publish_version(tmp_path, lambda d: _fail(d / "saved_model.pb"))
    assert not any(tmp_path.iterdir())
