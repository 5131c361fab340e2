"""An --out that holds another stage's output (its stage.json names another stage) is refused before anything is
written, in one place (pipeline/stage.py check_out_folder: StageRecord on entry, the runner before a resumable stage
may remove the folder); the same stage's folder is still rewritten."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.stage import STAGE_FILE, Stage, StageRecord, read_stage, run_stage
from tests.helpers.stage_record import stage_json
from tests.helpers.tiny_cohort import build_ingest, save_run


def _folder_of(path: Path, stage: str) -> str:
    path.mkdir(parents=True, exist_ok=True)
    text = json.dumps(stage_json(stage))
    (path / STAGE_FILE).write_text(text)
    return text


def test_stage_record_refuses_another_stages_folder_and_leaves_it(tmp_path):
    before = _folder_of(tmp_path / "erm-s1", "train")
    with pytest.raises(ConfigError, match=r"evaluate: --out must be an empty folder or an earlier output of "
                                          r"`cxr-fishr evaluate`, got .*erm-s1', which holds the output of "
                                          r"`cxr-fishr train`"):
        with StageRecord("evaluate", tmp_path / "erm-s1"):
            raise AssertionError("the block must not run")
    assert (tmp_path / "erm-s1" / STAGE_FILE).read_text() == before


def test_the_same_stages_folder_is_rewritten(tmp_path):
    _folder_of(tmp_path / "eval", "evaluate")
    with StageRecord("evaluate", tmp_path / "eval", seed=3):
        pass
    assert read_stage(tmp_path / "eval")["seed"] == 3


def test_a_folder_to_be_replaced_is_checked_too(tmp_path):
    _folder_of(tmp_path / "models" / "erm-s0", "train")
    with pytest.raises(ConfigError, match=r"ingest: --out .*which holds the output of `cxr-fishr train`"):
        with StageRecord("ingest", tmp_path / ".tmp", replaces=tmp_path / "models" / "erm-s0"):
            pass


def _write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "values.txt").write_text("1\n")


def test_the_runner_refuses_before_a_resumable_stage_removes_the_folder(tmp_path):
    _folder_of(tmp_path / "sweep", "train_sweep")
    (tmp_path / "sweep" / "sweep.json").write_text("[]")
    stage = Stage(name="train", out=tmp_path / "sweep", compute=functools.partial(_write_resumable),
                  resumable=True)
    with pytest.raises(ConfigError, match=r"which holds the output of `cxr-fishr train --sweep`"):
        run_stage(stage, echo=None)
    assert (tmp_path / "sweep" / "sweep.json").is_file() and read_stage(tmp_path / "sweep")["stage"] == "train_sweep"


def _write_resumable(out: Path, *, resume: bool) -> None:
    _write(out)


def test_evaluate_into_a_training_run_exits_2_and_keeps_its_stage_json(tmp_path, capsys):
    ingest = build_ingest(tmp_path / "ingest", n_per_site=4)
    run = save_run(tmp_path / "models" / "erm-s0", selected_rules=())
    other = save_run(tmp_path / "models" / "erm-s1", selected_rules=())
    before = _folder_of(other, "train")
    code = main(["evaluate", str(run), "--ingest", str(ingest), "--out", str(other)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "which holds the output of `cxr-fishr train`" in err and "choose an empty folder" in err
    assert (other / STAGE_FILE).read_text() == before and not (other / "metrics.json").exists()
