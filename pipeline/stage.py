"""Atomic output writing and the ``stage.json`` provenance record every stage leaves in its output directory.

Usage::

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

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
    ) -> None:
        """``input_hashes``: hashes the stage already computed for some of ``inputs`` (by name), not recomputed."""
        self.stage = stage
        self.out_dir = Path(out_dir)
        self.config = config
        self.seed = seed
        self.inputs = dict(inputs or {})
        self.input_hashes = dict(input_hashes or {})
        self.extra: dict[str, Any] = {}
        self._t0 = 0.0
        self._started = ""

    def __enter__(self) -> StageRecord:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stale = self.out_dir / "stage.json"
        if stale.exists():  # a half-rewritten directory must not look finished
            stale.unlink()
        self._t0 = time.perf_counter()
        self._started = _now()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        record = {
            "stage": self.stage,
            "config": to_jsonable(self.config),
            "seed": self.seed,
            "started": self._started,
            "finished": _now(),
            "seconds": round(time.perf_counter() - self._t0, 3),
            "inputs": {
                k: {"path": str(v), "hash": self.input_hashes.get(k) or content_hash(v)} for k, v in self.inputs.items()
            },
            "versions": package_versions(),
            "git_commit": git_commit(),
            "command": sys.argv,
            **to_jsonable(self.extra),
        }
        write_json_atomic(self.out_dir / "stage.json", record)


def read_stage(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / "stage.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
