"""The stage runner: atomic outputs, the ``stage.json`` record, input fingerprints and reuse, in one place.

A stage is declared, not hand-run (:class:`Stage`): its ``name``, its ``config`` (a pydantic model or a dict: what
the outputs depend on, never how fast they are made), its ``inputs`` (name -> path) and a pure ``compute(out)``
that writes its files into ``out``. :func:`run_stage` owns the rest. Lifecycle of one stage::

    fingerprint = sha256(name, resolved config, each input's fingerprint, cxr-fishr version, the stage's code digest)
    is_fresh(out, fingerprint)?      stage.json exists, finished, same fingerprint -> skip ("reusing ...")
    otherwise                        remove out/stage.json first (an interrupted stage must not look finished);
                                     a resumable stage (training) notes the fingerprint in out/.stage-started.json
                                     and resumes only a folder started under the same fingerprint
    compute(out)                     the stage's own files (written with atomic_path / write_json_atomic)
    stage.json, last                 the StageRecord fields + ``fingerprint`` (a compute step that wrote its own
                                     StageRecord gets the fingerprint added to it)

An input's fingerprint (:func:`input_fingerprint`) is the hash of its ``stage.json`` when it is a stage's output
folder (the record changes whenever that stage reran), else of the file, else of the folder's names, sizes and
mtimes. Independent stages run side by side through :mod:`pipeline.executor`.

``StageRecord`` is the record alone, for code that writes a stage's outputs itself::

    with StageRecord("ingest", out_dir, config=cfg, seed=cfg.seed, inputs={"source": src}) as record:
        ...                       # write outputs with write_json_atomic / atomic_path
        record.extra["counts"] = {...}
    # stage.json is written last, only if the block succeeded
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

STAGE_FILE = "stage.json"
TRACKED_PACKAGES = (
    "cxr-fishr", "torch", "torchvision", "numpy", "timm", "monai", "backpack-for-pytorch", "captum", "pydicom",
    "scikit-learn", "torchxrayvision", "pandas", "pydantic",
)


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file() and not tmp_path.is_symlink():
            # mkstemp creates 0600; the final file should get the mode a plain open() would give it
            os.chmod(tmp_path, 0o666 & ~_current_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def dumps_strict(data: Any, **kwargs: Any) -> str:
    """Strict JSON (RFC 8259) text: NaN/inf become null in :func:`to_jsonable`, and ``allow_nan=False`` makes any
    non-finite number that slipped through a ValueError instead of a ``NaN`` token other parsers reject."""
    return json.dumps(to_jsonable(data), allow_nan=False, **kwargs)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """``data`` as indented strict JSON (:func:`dumps_strict`), written atomically."""
    write_text_atomic(path, dumps_strict(data, indent=2, sort_keys=False) + "\n")


def to_jsonable(value: Any) -> Any:
    """Convert pydantic models, paths, numpy scalars and arrays into JSON-able values; a non-finite float (NaN,
    +-inf) becomes None (the writer of the dict puts the reason beside it, e.g. under ``not_measured``)."""
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays (their floats checked too)
        return to_jsonable(value.tolist())
    return value


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_hash(path: str | Path, max_files: int = 20000) -> str:
    """A hash of a file, or of a folder's file names, sizes and mtimes (cheap; enough to detect a changed input)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.exists():
        return "missing"
    digest = hashlib.sha256()
    for count, item in enumerate(sorted(p for p in path.rglob("*") if p.is_file())):
        if count >= max_files:
            digest.update(b"...truncated")
            break
        stat = item.stat()
        digest.update(f"{item.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@functools.cache  # read once per process: the metadata lookup costs ~10 ms, and a process runs several stages
def _installed_versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def package_versions() -> dict[str, str]:
    return dict(_installed_versions())


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=5, check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _command_words(stage: str) -> str:
    """The command that writes a stage.json's ``stage`` (the sweep records ``train_sweep``)."""
    return "train --sweep" if stage == "train_sweep" else stage


def check_out_folder(out: str | Path, *, stage: str) -> None:
    """ConfigError (exit 2) when ``out`` holds another stage's output: a ``stage.json`` whose ``stage`` is not
    ``stage``. Writing there would overwrite that record (and a resumable or swapped-in stage would remove the
    folder). An absent, unreadable or nameless stage.json passes: the stage rewrites it, as :func:`is_fresh` treats
    it. Called by :class:`StageRecord` on entry and by :func:`run_stage` before anything is written."""
    path = Path(out) / STAGE_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("stage") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return
    if recorded and recorded != stage:
        from pipeline.errors import ConfigError

        raise ConfigError(
            f"{_command_words(stage)}: --out must be an empty folder or an earlier output of `cxr-fishr "
            f"{_command_words(stage)}`, got {str(out)!r}, which holds the output of `cxr-fishr "
            f"{_command_words(recorded)}` ({path} records stage {recorded!r}). Writing there would overwrite it: "
            f"choose an empty folder or another {_command_words(stage)} folder for --out.")


class StageRecord:
    """Context manager writing ``<out>/stage.json`` when the stage finishes successfully (written last)."""

    def __init__(
        self,
        stage: str,
        out_dir: str | Path,
        *,
        config: Any = None,
        seed: int | None = None,
        inputs: Mapping[str, str | Path] | None = None,
        input_hashes: Mapping[str, str] | None = None,
        fingerprint: str | None = None,
        replaces: str | Path | None = None,
    ) -> None:
        """``input_hashes``: hashes the stage already computed for some of ``inputs`` (by name), not recomputed.
        ``fingerprint``: what :func:`is_fresh` compares (:func:`fingerprint`, or a stage's own, e.g. ingest's
        inputs hash); None leaves it out (such an output is never reused by the runner). ``replaces``: the folder
        ``out_dir`` will be swapped in for (ingest writes into a temporary folder): checked like ``out_dir`` by
        :func:`check_out_folder` on entry."""
        self.stage = stage
        self.out_dir = Path(out_dir)
        self.config = config
        self.seed = seed
        self.inputs = dict(inputs or {})
        self.input_hashes = dict(input_hashes or {})
        self.fingerprint = fingerprint
        self.replaces = Path(replaces) if replaces is not None else None
        self.extra: dict[str, Any] = {}
        self.seconds_before = 0.0  # a resumed stage's earlier sessions (train --resume), added to ``seconds``
        self._t0 = 0.0
        self._started = ""

    def __enter__(self) -> StageRecord:
        for folder in (self.out_dir, self.replaces):
            if folder is not None:
                check_out_folder(folder, stage=self.stage)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stale = self.out_dir / STAGE_FILE
        if stale.exists():  # a half-rewritten directory must not look finished
            stale.unlink()
        self._t0 = time.perf_counter()
        self._started = _now()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        record = _record(self.stage, config=self.config, seed=self.seed, started=self._started,
                         seconds=self.seconds_before + time.perf_counter() - self._t0, inputs=self.inputs,
                         input_hashes=self.input_hashes, fingerprint=self.fingerprint, extra=self.extra)
        write_json_atomic(self.out_dir / STAGE_FILE, record)


def _record(stage: str, *, config: Any, seed: int | None, started: str, seconds: float,
            inputs: Mapping[str, str | Path], input_hashes: Mapping[str, str], fingerprint: str | None,
            extra: Mapping[str, Any]) -> dict[str, Any]:
    """stage.json's fields: what ran, with what, from which inputs (path + hash), on which versions and commit."""
    return {
        "stage": stage,
        "config": to_jsonable(config),
        "seed": seed,
        "started": started,
        "finished": _now(),
        "seconds": round(seconds, 3),
        "inputs": {k: {"path": str(v), "hash": input_hashes.get(k) or content_hash(v)} for k, v in inputs.items()},
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": sys.argv,
        **({"fingerprint": fingerprint} if fingerprint else {}),
        **to_jsonable(extra),
    }


def read_stage(out_dir: str | Path) -> dict[str, Any]:
    """``<out_dir>/stage.json`` as a dict; {} when there is none (the stage never finished there). The runner's own
    view (it completes a record with the fingerprint); readers load the typed
    pipeline/artefacts/stage_file.py ``load_stage``."""
    path = Path(out_dir) / STAGE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


# ---- the runner -------------------------------------------------------------------------------------------------

def input_fingerprint(path: str | Path) -> str:
    """An input's identity for reuse: a stage's output folder by its ``stage.json`` (rewritten whenever that stage
    reran, so a rerun upstream reruns what reads it), a file by its bytes, another folder by its files' names,
    sizes and mtimes (:func:`content_hash`); "missing" when nothing is there."""
    path = Path(path)
    record = path / STAGE_FILE
    if path.is_dir() and record.is_file():
        return "stage:" + sha256_file(record)
    return content_hash(path)


def fingerprint(*, name: str, config: Any = None, inputs: Mapping[str, str | Path] | None = None,
                code: str = "") -> str:
    """sha256 hex of the stage's name, its resolved config (strict JSON, keys sorted), each input's
    :func:`input_fingerprint` by input name, the cxr-fishr version, the formats of the files the stage writes
    (:func:`pipeline.artefacts.format_digest`: a folder in an older format is recomputed, not reused and then
    refused by its reader) and ``code`` (a digest of the stage's own code, for a stage whose outputs must not
    outlive a code change, e.g. ingest's decoder)."""
    from pipeline import __version__
    from pipeline.artefacts import format_digest

    payload = {"stage": name, "config": to_jsonable(config),
               "inputs": {k: input_fingerprint(v) for k, v in sorted((inputs or {}).items())},
               "version": __version__, "formats": format_digest(name), "code": code}
    return hashlib.sha256(dumps_strict(payload, sort_keys=True).encode("utf-8")).hexdigest()


def is_fresh(out: str | Path, fingerprint: str | None) -> bool:
    """THE reuse rule: ``<out>/stage.json`` exists, records a finished stage, and its ``fingerprint`` equals
    ``fingerprint``. An unreadable record is not fresh (the stage runs again and rewrites it)."""
    if not fingerprint:
        return False
    try:
        record = read_stage(out)
    except (OSError, ValueError):
        return False
    return bool(record.get("finished")) and record.get("fingerprint") == fingerprint


@dataclass(frozen=True)
class Stage:
    """One stage, declared: what it is, what it reads, what it depends on, and how to compute it.

    ``compute(out)`` writes the stage's files into ``out`` (``compute(out, resume=bool)`` when ``resumable``); it
    may write its own :class:`StageRecord` (the runner then adds the fingerprint to it) or none (the runner writes
    it). ``config`` is what the outputs depend on: leave out settings that change speed only (threads, workers,
    progress bars). ``code``: a digest of code the outputs must not outlive (see :func:`fingerprint`).
    ``resumable``: an interrupted run under the same fingerprint continues (``resume=True``) and a folder of
    another fingerprint is removed first. ``reuse=False``: always computed (the report: seconds, and dated).
    The declaration is picklable when ``compute`` is (a module-level function or a ``functools.partial`` of one),
    so it can run in a worker process or on Ray (:mod:`pipeline.executor`)."""

    name: str
    out: Path
    compute: Callable[..., Any]
    config: Any = None
    inputs: Mapping[str, str | Path] = field(default_factory=dict)
    seed: int | None = None
    code: str = ""
    resumable: bool = False
    reuse: bool = True

    def fingerprint(self) -> str:
        """Computed when asked (never cached): an upstream stage may have rerun since the declaration."""
        return fingerprint(name=self.name, config=self.config, inputs=self.inputs, code=self.code)

    def is_fresh(self) -> bool:
        return self.reuse and is_fresh(self.out, self.fingerprint())


@dataclass(frozen=True)
class StageRun:
    """What :func:`run_stage` did: ``reused`` (inputs unchanged, nothing computed) and the compute's seconds."""

    name: str
    out: Path
    fingerprint: str
    reused: bool
    seconds: float
    resumed: bool = False


STARTED_FILE = ".stage-started.json"


def _started_fingerprint(out: Path) -> str | None:
    try:
        return json.loads((out / STARTED_FILE).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def run_stage(stage: Stage, *, echo: Callable[[str], None] | None = print) -> StageRun:
    """Run ``stage`` unless :func:`is_fresh` (then print "<name>: reusing <out> (inputs unchanged)" through
    ``echo``; None prints nothing). stage.json is written (or completed with the fingerprint) only after
    ``compute`` returned, so an interrupted stage never looks finished. Errors of ``compute`` propagate."""
    out = Path(stage.out)
    check_out_folder(out, stage=stage.name)  # before a resumable stage may remove the folder
    fp = stage.fingerprint()
    if stage.reuse and is_fresh(out, fp):
        if echo is not None:
            echo(f"{stage.name}: reusing {out} (inputs unchanged)")
        return StageRun(stage.name, out, fp, reused=True, seconds=0.0)
    resume = False
    if stage.resumable:
        resume = _started_fingerprint(out) == fp
        if not resume and ((out / STARTED_FILE).is_file() or (out / STAGE_FILE).is_file()):
            shutil.rmtree(out)  # an output of another config or other inputs: never resumed from, never mixed in
    (out / STAGE_FILE).unlink(missing_ok=True)
    if stage.resumable:
        write_json_atomic(out / STARTED_FILE, {"stage": stage.name, "fingerprint": fp})
    started, t0 = _now(), time.perf_counter()
    if stage.resumable:
        stage.compute(out, resume=resume)
    else:
        stage.compute(out)
    seconds = time.perf_counter() - t0
    record = read_stage(out)
    if record:  # the compute step wrote its own StageRecord: it keeps its fields, the fingerprint is added
        record["fingerprint"] = fp
    else:
        record = _record(stage.name, config=stage.config, seed=stage.seed, started=started, seconds=seconds,
                         inputs=stage.inputs, input_hashes={}, fingerprint=fp, extra={})
    write_json_atomic(out / STAGE_FILE, record)
    (out / STARTED_FILE).unlink(missing_ok=True)
    return StageRun(stage.name, out, fp, reused=False, seconds=seconds, resumed=resume)
