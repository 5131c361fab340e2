"""Foundation: atomic writes leave complete files with ordinary permissions."""

import os
import stat
from pathlib import Path

import pytest

from pipeline.stage import atomic_path, write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_path_final_file_mode_follows_umask(tmp_path, umask, mask):
    umask(mask)
    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"payload")
    assert target.read_bytes() == b"payload"
    assert _mode(target) == 0o666 & ~mask


def test_write_helpers_files_are_group_and_world_readable_under_022(tmp_path, umask):
    umask(0o022)
    write_text_atomic(tmp_path / "a.txt", "hello")
    write_json_atomic(tmp_path / "b.json", {"x": 1})
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "b.json") == 0o644


def test_atomic_path_failure_leaves_no_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_stage_record_uses_hashes_the_stage_already_has_and_hashes_the_rest(tmp_path):
    from pipeline.stage import StageRecord, content_hash, read_stage

    source, table = tmp_path / "source", tmp_path / "table.csv"
    source.mkdir()
    table.write_text("a,b\n1,2\n", encoding="utf-8")
    with StageRecord("ingest", tmp_path / "out", inputs={"source": source, "table": table},
                     input_hashes={"source": "listing-digest"}):
        pass
    inputs = read_stage(tmp_path / "out")["inputs"]
    assert inputs["source"] == {"path": str(source), "hash": "listing-digest"}
    assert inputs["table"]["hash"] == content_hash(table)


def test_dumps_strict_writes_null_for_non_finite_numbers_so_history_lines_stay_json():
    import json
    import math

    import numpy as np

    from pipeline.stage import dumps_strict

    text = dumps_strict({"step": 3, "ood_conflict_acc": math.nan, "loss": np.float32("inf"), "ok": 0.5})

    def refuse(token):
        raise AssertionError(token)

    assert json.loads(text, parse_constant=refuse) == {"step": 3, "ood_conflict_acc": None, "loss": None, "ok": 0.5}
