"""``pipeline.ingest.run``: SOURCE (+ metadata CSV) -> manifest, cache, rejects, summary, in one atomic step.

Everything is written into a temporary folder beside ``out`` and swapped in with renames at the end, so an
interrupted ingest leaves the previous outputs (or none), never half of them. SOURCE is only read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.artefacts.ingest_summary import IngestSummary
from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, load_ingest_config, load_mapping, with_size
from pipeline.ingest.disagreements import console_lines as disagreement_lines
from pipeline.ingest.discover import SourceListing
from pipeline.ingest.privacy import warning_line as privacy_warning
from pipeline.ingest.sources import SourceInputs, from_config
from pipeline.ingest.spellings import Merged
from pipeline.stage import StageRecord, is_fresh

SALT_FILENAME = "salt.txt"


@dataclass
class IngestResult:
    """The ingest folder, its summary (counts of kept and rejected images among them) and whether it was reused."""

    out: Path
    summary: IngestSummary
    reused: bool = False


def _inputs_hash(
    sources: list[SourceInputs], metadata_hashes: list[str], cf_listing: SourceListing | None, config: IngestConfig,
    salt: str,
) -> str:
    """Every source's files and CSV, the counterfactual folder, the config, the salt's hash and the version."""
    from pipeline import __version__

    digest = hashlib.sha256()
    for src, metadata_hash in zip(sources, metadata_hashes, strict=True):
        digest.update(f"{src.name}|{src.listing.digest}|{metadata_hash}\n".encode())
    digest.update((cf_listing.digest if cf_listing is not None else "-").encode())
    digest.update(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(hashlib.sha256(salt.encode()).hexdigest().encode())
    digest.update(__version__.encode())
    digest.update(_code_digest().encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """The ingest code itself: an output written by older code (e.g. before a decoding or privacy fix) is never
    reused, although the version string did not change."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    outside = ("manifest.py", "cache.py", "regions.py", "names.py", "artefacts/ingest_summary.py")
    for path in sorted([*package.glob("*.py"), *(package.parent / name for name in outside)]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _reusable(out: Path, inputs_hash: str) -> IngestSummary | None:
    """The previous summary when ``out`` is current by the stage runner's one rule (pipeline/stage.py: stage.json
    finished with the same fingerprint; ingest's fingerprint is its inputs hash, also cache.json's cohort identity)
    and its manifest and cache are there; else None."""
    if not (is_fresh(out, inputs_hash) and (out / "cache" / "cache.json").is_file()
            and (out / "manifest.parquet").is_file()):
        return None
    return IngestSummary.load(out) if IngestSummary.path_in(out).is_file() else None


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


def _redacted(config: IngestConfig) -> dict[str, Any]:
    dumped = config.model_dump(mode="json")
    if dumped.get("patient_salt"):
        dumped["patient_salt"] = "<redacted>"
    return dumped


def _load(config: IngestConfig | str | Path | None, size: int | None) -> IngestConfig:
    if not isinstance(config, IngestConfig):
        return load_ingest_config(config, size=size)
    cfg = config
    if isinstance(cfg.metadata_mapping, str):
        cfg = cfg.model_copy(update={"metadata_mapping": load_mapping(cfg.metadata_mapping, None)})
    return with_size(cfg, size)


def _sources(source: str | Path | None, metadata: str | Path | None, cfg: IngestConfig) -> list[SourceInputs]:
    """The CLI's SOURCE (+ --metadata), or the config's ``sources:`` list (then SOURCE and --metadata are not given)."""
    if cfg.sources:
        given = [f"{k}={str(v)!r}" for k, v in (("SOURCE", source), ("--metadata", metadata)) if v is not None]
        if given:
            raise ConfigError(
                f"ingest: SOURCE and --metadata must be omitted when the config lists `sources:` "
                f"({len(cfg.sources)} of them), got {' and '.join(given)}. "
                "Drop them (each entry of `sources:` names its folder and CSV), or remove `sources:` from the config."
            )
        return from_config(cfg)
    if source is None:
        raise ConfigError("ingest: SOURCE must be given (a folder of DICOM or PNG/JPEG files), got none. Pass SOURCE, "
                          "or list the folders under `sources:` in the config.")
    return [SourceInputs(
        name="", root=Path(source).expanduser().resolve(),
        metadata=Path(metadata).expanduser().resolve() if metadata else None, config=cfg,
    )]


def run(
    *,
    source: str | Path | None = None,
    out: str | Path,
    metadata: str | Path | None = None,
    config: IngestConfig | str | Path | None = None,
    size: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> IngestResult:
    """Ingest SOURCE (or the config's ``sources:``) into ``out``; returns counts (``reused`` when unchanged inputs
    found a finished cache). Prints a summary of what was kept, rejected, unlabelled and left unmatched."""
    out = Path(out).expanduser().resolve()
    cfg = _load(config, size)
    sources = _checked_sources(source, metadata, cfg, out)
    cf_root = _counterfactual_root(cfg, sources)
    salt, generated = _salt(cfg, out)
    for src in sources:
        src.listing = SourceListing.of(src.root)
    cf_listing = SourceListing.of(cf_root) if cf_root is not None else None
    metadata_hashes = [src.metadata_hash() for src in sources]
    inputs_hash = _inputs_hash(sources, metadata_hashes, cf_listing, cfg, salt)
    previous = _reusable(out, inputs_hash)
    if previous is not None:
        print(f"ingest: inputs unchanged, reusing {out} ({previous.n_images} images).", file=sys.stderr)
        return IngestResult(out, previous, reused=True)
    summary = _ingest_and_swap(out, sources=sources, cfg=cfg, salt=salt, generated=generated, cf_listing=cf_listing,
                               metadata_hashes=metadata_hashes, inputs_hash=inputs_hash, workers=workers,
                               progress=progress)
    for line in console_lines(summary, out):
        print(line, file=sys.stderr)
    return IngestResult(out, summary)


def _checked_sources(source: str | Path | None, metadata: str | Path | None, cfg: IngestConfig,
                     out: Path) -> list[SourceInputs]:
    """The SOURCE(s) to ingest, each checked against ``out``; ConfigError when ``out`` is a file."""
    sources = _sources(source, metadata, cfg)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"ingest: --out must be a folder, got the file {str(out)!r}. Choose another path.")
    for src in sources:
        src.check(out)
    return sources


def _counterfactual_root(cfg: IngestConfig, sources: list[SourceInputs]) -> Path | None:
    """The folder of counterfactual images (relative to the one SOURCE), None when the config names none or it is
    absent (a note is printed); ConfigError with ``sources:``."""
    if not cfg.counterfactual_source:
        return None
    if cfg.sources:
        raise ConfigError("ingest: counterfactual_source must be used with a single SOURCE, got `sources:` too. "
                          "Ingest the collection with counterfactuals on its own.")
    cf_root = (sources[0].root / Path(cfg.counterfactual_source).expanduser()).resolve()
    if not cf_root.is_dir():  # by design (synth_demo.yaml): an export may have none
        print(f"ingest: counterfactual_source {str(cf_root)!r} not found; no counterfactuals cached.", file=sys.stderr)
        return None
    return cf_root


def _ingest_and_swap(out: Path, *, sources: list[SourceInputs], cfg: IngestConfig, salt: str, generated: bool,
                     cf_listing: SourceListing | None, metadata_hashes: list[str], inputs_hash: str,
                     workers: int | None, progress: bool) -> IngestSummary:
    """Ingest into a fresh temporary folder beside ``out`` (stage.json last), then swap it in for ``out``; a failed
    ingest leaves ``out`` as it was."""
    from pipeline.ingest.assemble import ingest_into

    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out.parent.glob(f".{out.name}.tmp.*"), *out.parent.glob(f".{out.name}.old.*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed ingest into the same --out
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the outputs are meant to be shared
    try:
        inputs, known = _stage_inputs(sources, metadata_hashes)
        with StageRecord("ingest", tmp, config=_redacted(cfg), seed=cfg.splits.seed, inputs=inputs,
                         input_hashes=known, fingerprint=inputs_hash, replaces=out) as record:
            summary = ingest_into(
                tmp, sources=sources, config=cfg, salt=salt, cf_listing=cf_listing,
                inputs_hash=inputs_hash, workers=workers or cfg.workers, progress=progress,
            )
            if generated:
                (tmp / SALT_FILENAME).write_text(salt + "\n", encoding="utf-8")
            record.extra["counts"] = {"n_images": summary.n_images, "n_rejected": summary.n_rejected}
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _stage_inputs(sources: list[SourceInputs], metadata_hashes: list[str]) -> tuple[dict, dict]:
    """stage.json's inputs and their hashes: 'source'/'metadata' for one SOURCE, '<name>'/'<name>:metadata' else."""
    inputs: dict[str, Path] = {}
    known: dict[str, str] = {}
    for src, metadata_hash in zip(sources, metadata_hashes, strict=True):
        key = src.name or "source"
        inputs[key], known[key] = src.root, src.listing.digest
        meta_key = f"{src.name}:metadata" if src.name else "metadata"
        if src.metadata is not None:
            inputs[meta_key] = src.metadata
        known[meta_key] = metadata_hash
    return inputs, known


def console_lines(summary: IngestSummary, out: Path) -> list[str]:
    """The end-of-ingest account: warnings, names resolved by case, CSV rows without image, conflicts, unlabelled,
    path-field misses, then kept / rejected by reason."""
    lines = [f"ingest: WARNING: {w}" for w in summary.confounding.warnings]
    for item in summary.config_names_resolved:
        lines.append(f"ingest: config {item.key}: {item.given!r} matched {item.resolved!r} "
                     "(only by ignoring case/whitespace)")
    lines += Merged(summary.merged_spellings, summary.merged_spelling_images).lines()
    skipped = summary.skipped_non_image_files
    if skipped.n:
        lines.append(f"ingest: skipped {_plural(skipped.n, 'file')} that are not images (tables, documents, archives, hidden "
                     f"or system files), e.g. {', '.join(skipped.examples[:3])}; not counted as rejected")
    conflicting = summary.conflicting_duplicate_labels
    if conflicting.images:
        lines.append(f"ingest: WARNING: {_plural(conflicting.images, 'file')} in "
                     f"{_plural(conflicting.groups, 'group')} of identical "
                     "pixels carry conflicting labels: all rejected (conflicting_duplicate_labels in rejects.csv)")
    missing = summary.metadata_rows_without_image
    if summary.metadata_rows:
        examples = ", ".join(missing.examples[:3])
        lines.append(
            f"ingest: metadata: {summary.metadata_rows} CSV rows, {summary.metadata_rows_matched} matched a file, "
            f"{missing.n} name no file under SOURCE{f' (e.g. {examples})' if missing.n else ''}; "
            f"{summary.metadata_duplicate_rows} agreeing duplicate rows, "
            f"{summary.conflicting_metadata_rows} files with conflicting rows (rejected)"
        )
    for name, info in summary.path_fields.items():
        if info.unmatched:
            lines.append(f"ingest: path_fields {name}: {info.unmatched} files not matched by {info.pattern!r} "
                         f"(field unknown), e.g. {', '.join(info.unmatched_examples[:3])}")
    lines += disagreement_lines(summary.field_disagreements)
    scrubbed = privacy_warning(summary.patient_identifiers_in_file_names)
    lines += [scrubbed] if scrubbed else []
    lines.append(f"ingest: unlabelled: {summary.n_unlabelled} of the kept images have no label (kept with label "
                 "unknown: split and audited, never trained or scored on)")
    reasons = ", ".join(f"{k} {v}" for k, v in summary.rejects_by_reason.items())
    lines.append(
        f"ingest: kept {summary.n_images} images, rejected {summary.n_rejected} files"
        f"{f' ({reasons})' if reasons else ''} -> {out}"
    )
    return lines


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
