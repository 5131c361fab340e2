"""``pipeline.ingest.run``: SOURCE (+ metadata CSV) -> manifest, cache, rejects, summary, in one atomic step.

Everything is written into a temporary folder beside ``out`` and swapped in with renames at the end, so an
interrupted ingest leaves the previous outputs (or none), never half of them. SOURCE is only read.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, DataError
from pipeline.ingest.config import IngestConfig, MetadataMapping, load_ingest_config, load_mapping, with_size
from pipeline.ingest.discover import SourceListing
from pipeline.stage import StageRecord, read_stage, sha256_file

SALT_FILENAME = "salt.txt"
REJECT_COLUMNS = ("path", "reason", "detail")


@dataclass
class IngestResult:
    out: Path
    n_images: int
    n_rejected: int
    reused: bool = False
    summary: dict[str, Any] = field(default_factory=dict)


def _inputs_hash(
    listing: SourceListing, metadata_hash: str, cf_listing: SourceListing | None, config: IngestConfig, salt: str
) -> str:
    from pipeline import __version__

    digest = hashlib.sha256()
    digest.update(listing.digest.encode())
    digest.update(metadata_hash.encode())
    digest.update((cf_listing.digest if cf_listing is not None else "-").encode())
    digest.update(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(hashlib.sha256(salt.encode()).hexdigest().encode())
    digest.update(__version__.encode())
    return digest.hexdigest()


def _reusable(out: Path, inputs_hash: str) -> dict[str, Any] | None:
    info_path = out / "cache" / "cache.json"
    if not (info_path.is_file() and (out / "stage.json").is_file() and (out / "manifest.parquet").is_file()):
        return None
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if info.get("inputs_hash") != inputs_hash:
        return None
    summary_path = out / "summary.json"
    return json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}


def _salt(config: IngestConfig, out: Path) -> tuple[str, bool]:
    """(salt, generated_here): the config's, else the one kept beside a previous manifest, else a new one."""
    if config.patient_salt:
        return config.patient_salt, False
    kept = out / SALT_FILENAME
    if kept.is_file():
        return kept.read_text(encoding="utf-8").strip(), True
    return secrets.token_hex(16), True


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` by ``tmp`` with two renames (the old tree is removed only after the new one is in place)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _collector_ignores_existing_objects():
    """Hide the objects that exist before ingest (torch and MONAI alone make ~500k) from the garbage collector while
    it runs: one full collection over them costs ~0.3 s of a 2.5 s ingest, and a forked worker that collected them
    would copy every page of its parent's memory it touches. Left alone when the caller froze objects itself."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _redacted(config: IngestConfig) -> dict[str, Any]:
    dumped = config.model_dump(mode="json")
    if dumped.get("patient_salt"):
        dumped["patient_salt"] = "<redacted>"
    return dumped


def run(
    *,
    source: str | Path,
    out: str | Path,
    metadata: str | Path | None = None,
    config: IngestConfig | str | Path | None = None,
    size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> IngestResult:
    """Ingest SOURCE into ``out``; returns counts (``reused`` when unchanged inputs found a finished cache)."""
    from pipeline.ingest.assemble import ingest_into

    source, out = Path(source).expanduser().resolve(), Path(out).expanduser().resolve()
    if isinstance(config, IngestConfig):
        cfg = config
        if isinstance(cfg.metadata_mapping, str):
            cfg = cfg.model_copy(update={"metadata_mapping": load_mapping(cfg.metadata_mapping, None)})
        cfg = with_size(cfg, size)
    else:
        cfg = load_ingest_config(config, size=size)
    if not source.is_dir():
        raise DataError(f"ingest: SOURCE must be a folder of DICOM or PNG/JPEG files, got {str(source)!r}.")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"ingest: --out must be a folder, got the file {str(out)!r}. Choose another path.")
    if out == source or source in out.parents:
        raise ConfigError(f"ingest: --out must lie outside SOURCE (SOURCE is never modified), got {str(out)!r}.")
    metadata_path = Path(metadata).expanduser().resolve() if metadata else None
    if metadata_path is not None and not isinstance(cfg.metadata_mapping, MetadataMapping):
        raise ConfigError(
            "ingest: metadata_mapping must be set in the config when --metadata is given, got none. "
            "Add e.g. `metadata_mapping: data_manifests/sources/nih_chestxray14.yaml` to the config."
        )
    if metadata_path is None and isinstance(cfg.metadata_mapping, MetadataMapping) and cfg.metadata_mapping.label_column:
        raise ConfigError(
            f"ingest: --metadata must name the CSV that the mapping {cfg.metadata_mapping.name!r} reads labels from, "
            "got none. Pass --metadata labels.csv."
        )
    cf_root = (source / Path(cfg.counterfactual_source).expanduser()).resolve() if cfg.counterfactual_source else None
    if cf_root is not None and not cf_root.is_dir():
        print(f"ingest: counterfactual_source {str(cf_root)!r} not found; no counterfactuals cached.", file=sys.stderr)
        cf_root = None
    salt, generated = _salt(cfg, out)
    listing, cf_listing = SourceListing.of(source), SourceListing.of(cf_root) if cf_root is not None else None
    metadata_hash = sha256_file(metadata_path) if metadata_path else "-"
    inputs_hash = _inputs_hash(listing, metadata_hash, cf_listing, cfg, salt)
    previous = _reusable(out, inputs_hash)
    if previous is not None and read_stage(out):
        print(f"ingest: inputs unchanged, reusing {out} ({previous.get('n_images', '?')} images).", file=sys.stderr)
        return IngestResult(out, int(previous.get("n_images", 0)), int(previous.get("n_rejected", 0)), True, previous)

    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out.parent.glob(f".{out.name}.tmp.*"), *out.parent.glob(f".{out.name}.old.*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed ingest into the same --out
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the outputs are meant to be shared
    try:
        inputs = {"source": source, **({"metadata": metadata_path} if metadata_path else {})}
        known = {"source": listing.digest, "metadata": metadata_hash}
        with (
            _collector_ignores_existing_objects(),
            StageRecord("ingest", tmp, config=_redacted(cfg), seed=cfg.splits.seed, inputs=inputs,
                        input_hashes=known) as record,
        ):
            summary = ingest_into(
                tmp, listing=listing, metadata=metadata_path, config=cfg, salt=salt, cf_listing=cf_listing,
                inputs_hash=inputs_hash, workers=workers or cfg.workers, progress=progress,
            )
            if generated:
                (tmp / SALT_FILENAME).write_text(salt + "\n", encoding="utf-8")
            record.extra["counts"] = {"n_images": summary["n_images"], "n_rejected": summary["n_rejected"]}
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for warning in summary["confounding"]["warnings"]:
        print(f"ingest: WARNING: {warning}", file=sys.stderr)
    reasons = ", ".join(f"{k} {v}" for k, v in summary["rejects_by_reason"].items())
    print(
        f"ingest: kept {summary['n_images']} images, rejected {summary['n_rejected']} files"
        f"{f' ({reasons})' if reasons else ''} -> {out}",
        file=sys.stderr,
    )
    return IngestResult(out, summary["n_images"], summary["n_rejected"], False, summary)
