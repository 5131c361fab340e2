"""sweep.json records run folders relative to the sweep folder: a sweep run from one working directory is read
from another, a copied sweep tabulates its own runs, an older sweep.json (cwd-relative or absolute paths) is still
read with a note, and a run folder outside the sweep folder or missing is an error naming it."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.results import collect_runs
from pipeline.train import load_train_config
from pipeline.train.sweep import _portable, run_sweep


@pytest.fixture
def sweep(toy_ingest_dir, tmp_path, tiny_config, monkeypatch):
    """A one-run sweep launched as `--out sw` from tmp_path/work (a path relative to the working directory)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_train_config(tiny_config(steps=4, eval_every=4, checkpoint_every=4))
    run_sweep(ingest_dir=toy_ingest_dir, config=cfg, out="sw", n_hparams=1, seeds=1)
    return work / "sw"


def test_sweep_json_is_relative_and_a_copy_reads_its_own_runs(sweep, tmp_path, monkeypatch):
    entries = json.loads((sweep / "sweep.json").read_text())
    key = entries[0]["dir"].split("/")[-1]
    assert entries[0]["dir"] == f"runs/{key}"
    selection = json.loads((sweep / "selection.json").read_text())
    assert all(choice.get("runs", [f"runs/{key}"]) == [f"runs/{key}"] for choice in selection.values())
    nested = _portable({"north": {"oracle": {"runs": [str(sweep / "runs" / key)]}}}, sweep)
    assert nested == {"north": {"oracle": {"runs": [f"runs/{key}"]}}}  # per-hospital selection.json too
    monkeypatch.chdir("/")  # another working directory
    assert main(["results", str(sweep)]) == 0
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(sweep, copy)
    runs, _, notes = collect_runs(copy)
    assert [r["dir"] for r in runs] == [str(copy / "runs" / key)] and notes == []
    # a sweep.json alone (its runs not copied) never reads the original's runs
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(sweep / "sweep.json", empty / "sweep.json")
    with pytest.raises(DataError, match=f"runs/{key}.*does not exist"):
        collect_runs(empty)
    assert main(["results", str(empty)]) == 2


def test_older_sweep_json_paths_read_with_a_note_never_outside_the_sweep(sweep, tmp_path, monkeypatch):
    entries = json.loads((sweep / "sweep.json").read_text())
    key = entries[0]["dir"].split("/")[-1]
    copy = tmp_path / "work" / "copy"
    shutil.copytree(sweep, copy)
    # as an older sweep wrote it: relative to the working directory it was launched from (tmp_path/work)
    legacy = [{**e, "dir": f"sw/runs/{key}"} for e in entries]
    (copy / "sweep.json").write_text(json.dumps(legacy))
    runs, _, notes = collect_runs(copy)  # cwd is tmp_path/work: sw/runs/KEY exists but is the original's
    assert runs[0]["dir"] == str(copy / "runs" / key) and len(notes) == 1 and "older sweep" in notes[0]
    (copy / "sweep.json").write_text(json.dumps([{**e, "dir": str(sweep / "runs" / key)} for e in entries]))
    runs, _, notes = collect_runs(sweep.parent / "copy")  # an absolute path into another sweep: own runs/KEY
    assert runs[0]["dir"] == str(copy / "runs" / key) and notes
    shutil.rmtree(copy / "runs")
    with pytest.raises(DataError, match="lies outside the sweep folder"):
        collect_runs(copy)
    (copy / "sweep.json").write_text(json.dumps([{**e, "dir": f"../sw/runs/{key}"} for e in entries]))
    with pytest.raises(DataError, match=f"'../sw/runs/{key}'.*lies outside"):
        collect_runs(copy)
