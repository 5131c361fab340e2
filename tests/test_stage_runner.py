"""The stage runner (pipeline/stage.py): one freshness rule (stage.json finished + same fingerprint), interrupted
stages never look finished, a changed input or config reruns, resumable stages resume only their own fingerprint."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from pipeline.stage import (
    STAGE_FILE,
    STARTED_FILE,
    Stage,
    StageRecord,
    fingerprint,
    input_fingerprint,
    is_fresh,
    read_stage,
    run_stage,
)


def _double(out: Path, *, source: Path, factor: int, calls: list[str] | None = None) -> None:
    """A pure compute step: reads ``source`` (numbers, one a line), writes each times ``factor``."""
    if calls is not None:
        calls.append(str(out))
    values = [int(v) * factor for v in source.read_text().split()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "values.txt").write_text("\n".join(map(str, values)) + "\n")


def _stage(tmp: Path, *, factor: int = 2, calls: list[str] | None = None, name: str = "double") -> Stage:
    source = tmp / "source.txt"
    return Stage(name=name, out=tmp / "out", config={"factor": factor}, inputs={"source": source},
                 compute=functools.partial(_double, source=source, factor=factor, calls=calls))


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "source.txt").write_text("1\n2\n3\n")
    return tmp_path


def test_first_run_computes_and_writes_stage_json_with_the_fingerprint(tmp):
    stage = _stage(tmp)
    result = run_stage(stage, echo=None)
    assert not result.reused
    assert (tmp / "out" / "values.txt").read_text() == "2\n4\n6\n"
    record = read_stage(tmp / "out")
    assert record["stage"] == "double" and record["config"] == {"factor": 2}
    assert record["fingerprint"] == stage.fingerprint() == result.fingerprint
    assert record["inputs"]["source"]["path"] == str(tmp / "source.txt") and record["finished"]


def test_second_run_is_reused_and_says_so(tmp):
    calls: list[str] = []
    run_stage(_stage(tmp, calls=calls), echo=None)
    lines: list[str] = []
    again = run_stage(_stage(tmp, calls=calls), echo=lines.append)
    assert again.reused and len(calls) == 1
    assert lines == [f"double: reusing {tmp / 'out'} (inputs unchanged)"]


def test_changed_input_file_reruns(tmp):
    calls: list[str] = []
    run_stage(_stage(tmp, calls=calls), echo=None)
    (tmp / "source.txt").write_text("5\n")
    assert not run_stage(_stage(tmp, calls=calls), echo=None).reused
    assert len(calls) == 2 and (tmp / "out" / "values.txt").read_text() == "10\n"


def test_changed_config_reruns(tmp):
    run_stage(_stage(tmp, factor=2), echo=None)
    assert not _stage(tmp, factor=3).is_fresh()
    assert not run_stage(_stage(tmp, factor=3), echo=None).reused
    assert (tmp / "out" / "values.txt").read_text() == "3\n6\n9\n"


def test_interrupted_stage_is_not_fresh_and_a_failed_compute_leaves_no_record(tmp):
    stage = _stage(tmp)
    run_stage(stage, echo=None)
    (tmp / "source.txt").write_text("not a number\n")  # the rerun fails inside compute
    with pytest.raises(ValueError):
        run_stage(_stage(tmp), echo=None)
    # the old record was removed before compute: the half-rewritten folder must not look finished
    assert not (tmp / "out" / STAGE_FILE).exists()
    assert not is_fresh(tmp / "out", stage.fingerprint())


def test_record_without_fingerprint_or_unfinished_is_not_fresh(tmp):
    stage = _stage(tmp)
    run_stage(stage, echo=None)
    record = read_stage(tmp / "out")
    fp = record.pop("fingerprint")
    (tmp / "out" / STAGE_FILE).write_text(json.dumps(record))
    assert not is_fresh(tmp / "out", fp)
    (tmp / "out" / STAGE_FILE).write_text(json.dumps({**record, "fingerprint": fp, "finished": None}))
    assert not is_fresh(tmp / "out", fp)
    (tmp / "out" / STAGE_FILE).write_text("{not json")
    assert not is_fresh(tmp / "out", fp)


def test_compute_that_writes_its_own_record_keeps_its_fields_and_gets_the_fingerprint(tmp):
    def own(out: Path) -> None:
        with StageRecord("own", out, config={"a": 1}) as record:
            record.extra["counts"] = {"n": 7}

    stage = Stage(name="own", out=tmp / "own", config={"a": 1}, compute=own)
    run_stage(stage, echo=None)
    record = read_stage(tmp / "own")
    assert record["counts"] == {"n": 7} and record["fingerprint"] == stage.fingerprint()


def test_an_upstream_stage_that_reran_reruns_the_stage_reading_it(tmp):
    upstream = _stage(tmp)
    run_stage(upstream, echo=None)
    down_source = tmp / "out" / "values.txt"
    down = Stage(name="down", out=tmp / "down", inputs={"upstream": tmp / "out"},
                 compute=functools.partial(_double, source=down_source, factor=10))
    run_stage(down, echo=None)
    assert down.is_fresh()
    before = input_fingerprint(tmp / "out")
    assert before.startswith("stage:")
    run_stage(_stage(tmp, factor=3), echo=None)  # upstream reran: its stage.json changed
    assert input_fingerprint(tmp / "out") != before and not down.is_fresh()
    assert not run_stage(down, echo=None).reused
    assert (tmp / "down" / "values.txt").read_text() == "30\n60\n90\n"


def test_fingerprint_depends_on_name_config_inputs_and_code_not_on_key_order(tmp):
    base = fingerprint(name="a", config={"x": 1, "y": 2}, inputs={"s": tmp / "source.txt"})
    assert base == fingerprint(name="a", config={"y": 2, "x": 1}, inputs={"s": tmp / "source.txt"})
    assert base != fingerprint(name="b", config={"x": 1, "y": 2}, inputs={"s": tmp / "source.txt"})
    assert base != fingerprint(name="a", config={"x": 1, "y": 3}, inputs={"s": tmp / "source.txt"})
    assert base != fingerprint(name="a", config={"x": 1, "y": 2}, inputs={"s": tmp / "missing.txt"})
    assert base != fingerprint(name="a", config={"x": 1, "y": 2}, inputs={"s": tmp / "source.txt"}, code="v2")


def _resumable(out: Path, *, resume: bool, log: list[bool], steps: int, fail_at: int | None = None) -> None:
    """Counts to ``steps`` in out/count.txt, one line a step; continues the file when ``resume``."""
    log.append(resume)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "count.txt"
    done = len(path.read_text().split()) if resume and path.is_file() else 0
    with path.open("a" if resume else "w") as handle:
        for step in range(done, steps):
            if fail_at is not None and step == fail_at:
                raise RuntimeError("killed")
            handle.write(f"{step}\n")
            handle.flush()


def test_resumable_stage_resumes_its_own_interrupted_run_and_restarts_another_configs(tmp):
    log: list[bool] = []

    def declare(steps: int, fail_at: int | None = None) -> Stage:
        return Stage(name="count", out=tmp / "count", config={"steps": steps}, resumable=True,
                     compute=functools.partial(_resumable, log=log, steps=steps, fail_at=fail_at))

    with pytest.raises(RuntimeError):
        run_stage(declare(5, fail_at=3), echo=None)
    assert (tmp / "count" / STARTED_FILE).is_file() and not (tmp / "count" / STAGE_FILE).exists()
    run_stage(declare(5), echo=None)  # same fingerprint: resumes at step 3
    assert log == [False, True] and (tmp / "count" / "count.txt").read_text().split() == ["0", "1", "2", "3", "4"]
    assert not (tmp / "count" / STARTED_FILE).exists()
    (tmp / "count" / "leftover.txt").write_text("from the 5-step run")
    run_stage(declare(2), echo=None)  # another config: the old folder is removed, the run starts over
    assert log == [False, True, False] and not (tmp / "count" / "leftover.txt").exists()
    assert (tmp / "count" / "count.txt").read_text().split() == ["0", "1"]


def test_reuse_false_always_computes(tmp):
    calls: list[str] = []
    stage = Stage(name="report", out=tmp / "r", reuse=False, inputs={"source": tmp / "source.txt"},
                  compute=functools.partial(_double, source=tmp / "source.txt", factor=1, calls=calls))
    run_stage(stage, echo=None)
    assert not run_stage(stage, echo=None).reused and len(calls) == 2


def test_a_changed_file_format_makes_the_stage_recompute_instead_of_reusing(tmp_path, monkeypatch):
    # a folder written in an older format must not be reused and then refused by its reader (found when a required
    # field was added to audit.json and `make demo` reused the old audit)
    import pipeline.artefacts as artefacts
    from pipeline.stage import fingerprint

    before = fingerprint(name="audit", config={"a": 1})
    other = tuple((where, "pipeline.artefacts.metrics:MetricsFile" if where.startswith("AUDIT/") else spec)
                  for where, spec in artefacts.ARTEFACTS)
    artefacts.format_digest.cache_clear()
    monkeypatch.setattr(artefacts, "ARTEFACTS", other)
    try:
        assert fingerprint(name="audit", config={"a": 1}) != before
        # a stage whose files did not change keeps its fingerprint
        assert artefacts.format_digest("ingest") == artefacts.format_digest.__wrapped__("ingest")
    finally:
        artefacts.format_digest.cache_clear()


def test_every_stage_fingerprint_covers_stage_json_and_only_its_own_files():
    from pipeline.artefacts import format_digest

    digests = {s: format_digest(s) for s in ("ingest", "train", "evaluate", "audit", "results", "synth")}
    assert len(set(digests.values())) == len(digests)  # synth writes stage.json only; each other stage its files
