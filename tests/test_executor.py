"""The one executor (pipeline/executor.py): results in job order, a failing job never stops the others, in this
process and in the spawn pool; failures are raised with the job's log tail by raise_failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError, DataError
from pipeline.executor import Job, log_tail, raise_failures, run_jobs


def square(*, x: int, out: str | None = None) -> int:
    """A job: prints a line (to its log in a worker), writes ``out`` when given, returns x squared."""
    print(f"squaring {x}")
    if out:
        Path(out).write_text(str(x * x))
    return x * x


def fail(*, message: str) -> None:
    print("about to fail")
    raise DataError(message)


def crash() -> None:
    raise ZeroDivisionError("division by zero\nlast line of the crash")


def _jobs(tmp: Path) -> list[Job]:
    return [Job("a", square, {"x": 2, "out": str(tmp / "a.txt")}),
            Job("bad", fail, {"message": "data: the CSV names no image (labels.csv). Fix the CSV."}),
            Job("c", square, {"x": 3, "out": str(tmp / "c.txt")})]


def test_in_process_failing_job_does_not_stop_the_others(tmp_path):
    results = run_jobs(_jobs(tmp_path), workers=1)
    assert [r.name for r in results] == ["a", "bad", "c"]
    assert [r.value for r in results] == [4, None, 9]
    assert (tmp_path / "c.txt").read_text() == "9"
    bad = results[1]
    assert not bad.ok and bad.error == "data: the CSV names no image (labels.csv). Fix the CSV."
    assert isinstance(bad.exception, DataError)


def test_pool_failing_job_does_not_stop_the_others_and_logs_per_job(tmp_path):
    results = run_jobs(_jobs(tmp_path), workers=2, log_dir=tmp_path / "logs")
    assert [r.value for r in results] == [4, None, 9] and [r.ok for r in results] == [True, False, True]
    assert (tmp_path / "a.txt").read_text() == "4" and (tmp_path / "c.txt").read_text() == "9"
    assert (tmp_path / "logs" / "a.log").read_text() == "squaring 2\n"
    assert "about to fail" in (tmp_path / "logs" / "bad.log").read_text()
    assert isinstance(results[1].exception, DataError) and results[1].log == tmp_path / "logs" / "bad.log"


def test_other_exceptions_are_described_by_type_and_last_line(tmp_path):
    (result,) = run_jobs([Job("crash", crash)], workers=1)
    assert result.error == "ZeroDivisionError: last line of the crash"


def test_raise_failures_prints_the_log_tail_and_raises_the_first_failure(tmp_path):
    results = run_jobs(_jobs(tmp_path), workers=2, log_dir=tmp_path / "logs")
    lines: list[str] = []
    with pytest.raises(DataError, match="names no image"):
        raise_failures(results, echo=lines.append)
    assert len(lines) == 1 and "bad failed" in lines[0] and "    | about to fail" in lines[0]
    raise_failures([r for r in results if r.ok])  # nothing failed: no error


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    assert log_tail(log, lines=2) == "    | line 28\n    | line 29"
    assert log_tail(tmp_path / "missing.log") == ""


def test_bad_engine_workers_or_repeated_names_are_config_errors():
    with pytest.raises(ConfigError, match="engine"):
        run_jobs([Job("a", square, {"x": 1})], engine="slurm")
    with pytest.raises(ConfigError, match="workers"):
        run_jobs([Job("a", square, {"x": 1})], workers=0)
    with pytest.raises(ConfigError, match="distinct"):
        run_jobs([Job("a", square, {"x": 1}), Job("a", square, {"x": 2})])
    assert run_jobs([], workers=3) == []
