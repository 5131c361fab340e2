"""Every JSON `cxr-fishr results` reads (sweep.json, each run's selection.json, history.jsonl; a stage.json goes through load_stage, which names it), when
truncated or not what it must be, is exit 2 naming the file: never a JSONDecodeError traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.results import collect_runs
from tests.train.test_results_tables import _entry, _sweep


def _one_run_sweep(tmp_path: Path) -> tuple[Path, Path]:
    sweep = tmp_path / "sweeps" / "erm"
    entry = _entry(sweep, "erm", 0, 0, val=0.9, test=0.5)
    _sweep(sweep, [entry])
    return sweep, Path(entry["dir"])


def test_a_truncated_sweep_json_exits_2_naming_it(tmp_path, capsys):
    sweep, _ = _one_run_sweep(tmp_path)
    os.truncate(sweep / "sweep.json", 100)
    assert main(["results", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert f"{sweep / 'sweep.json'} must be valid JSON" in err and "truncated or damaged" in err
    assert "Relaunch the same sweep" in err


@pytest.mark.parametrize("content", ['{"dir": "runs/a"}', '["runs/a"]', '[{"algorithm": "erm"}]'])
def test_a_sweep_json_that_is_not_a_list_of_runs_is_a_data_error(tmp_path, content):
    sweep, _ = _one_run_sweep(tmp_path)
    (sweep / "sweep.json").write_text(content)
    with pytest.raises(DataError, match=r"sweep.json must be a JSON list of runs, each an object with a 'dir'"):
        collect_runs(sweep)


@pytest.mark.parametrize("name", ["selection.json", "history.jsonl"])
def test_a_truncated_file_of_a_run_exits_2_naming_it(tmp_path, capsys, name):
    sweep, run = _one_run_sweep(tmp_path)
    text = (run / name).read_text()
    (run / name).write_text(text[: len(text) - 12])
    assert main(["results", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert str(run / name) in err, err
