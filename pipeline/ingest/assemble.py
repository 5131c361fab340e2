"""The body of an ingest: find files, decode them in a process pool into the cache, derive fields, split, write.

Writes into ``ingest_dir`` (a temporary folder that :mod:`pipeline.ingest.runner` swaps in at the end).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, DataError
from pipeline.ingest.cache_writer import CacheWriter
from pipeline.ingest.config import IngestConfig, MetadataMapping
from pipeline.ingest.csv_source import image_key, index_rows, read_table
from pipeline.ingest.discover import Candidate, SourceListing, discover, pair_counterfactuals
from pipeline.ingest.fields import Harmoniser
from pipeline.ingest.preprocess import Processed, Task, init_worker, process, release_cache_files, worker_settings

SERIAL_BELOW = 24  # a pool costs more than it saves on a handful of files


def _results(tasks: list[Task], workers: int, progress: bool) -> Iterator[Processed]:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="ingest", unit="img", file=sys.stderr, disable=not progress, leave=False)
    try:
        if workers <= 1 or len(tasks) < SERIAL_BELOW:
            try:
                with worker_settings():  # the caller runs no torch code between our yields
                    for task in tasks:
                        yield process(task)
                        bar.update()
            finally:
                release_cache_files()
            return
        import multiprocessing

        import monai.transforms  # noqa: F401  imported once here so forked workers do not each import it

        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        # chunks of up to 32 images: fewer hand-offs (each costs the parent ~1 ms of CPU that the workers need) while a
        # worker that runs out of work waits at most for the other's last chunk (32 images = 40 ms at 256 px)
        chunk = max(1, min(32, len(tasks) // (workers * 16)))
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker)
        try:
            for result in pool.map(process, tasks, chunksize=chunk):
                yield result
                bar.update()
        finally:
            # not waiting for the workers to exit (20-30 ms): every row they wrote is in the cache once its result is
            # here, they hold no mapping of it, and the pool's own thread joins them
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        bar.close()


def _task(
    candidate: Candidate, config: IngestConfig, cf: Candidate | None = None, *, cache_dir: str = "", row: int = -1,
    cf_row: int = -1, array_prefix: str = "",
) -> Task:
    return Task(
        cache_dir=cache_dir, row=row, array_prefix=array_prefix,
        path=candidate.path, relative=candidate.relative, masks=candidate.masks, size=config.cache.size,
        aspect=config.cache.aspect, crop_fraction=config.cache.crop_fraction,
        modalities=tuple(m.upper() for m in config.modalities) if config.modalities is not None else None,
        counterfactual=(
            _task(cf, config, cache_dir=cache_dir, row=cf_row, array_prefix="counterfactual_") if cf is not None else None
        ),
    )


def _metadata_rows(metadata: Path | None, mapping: MetadataMapping | None) -> tuple[dict[str, dict], int]:
    if metadata is None or mapping is None:
        return {}, 0
    return index_rows(read_table(metadata, mapping), mapping)


def _match_metadata(
    candidates: list[Candidate], rows: dict[str, dict], mapping: MetadataMapping | None, harmoniser: Harmoniser,
    metadata: Path | None, rejects: list[tuple[str, str, str]],
) -> list[tuple[Candidate, dict | None]]:
    """Each candidate with its CSV row; files without a row or with an unmapped label are rejected before decoding."""
    labelled: list[tuple[Candidate, dict | None]] = []
    for candidate in candidates:
        row = rows.get(image_key(candidate.relative, mapping.match)) if mapping else None
        if mapping is not None and mapping.label_column:
            if row is None:
                rejects.append((candidate.relative, "no_metadata_row", f"no row of {metadata.name} names this file"))
                continue
            if harmoniser.label_of(row) is None:
                value = row.get(mapping.label_column)
                rejects.append((candidate.relative, "label_unmapped", f"{mapping.label_column}={value!r}"))
                continue
        labelled.append((candidate, row))
    if mapping is not None and rows and candidates and not any(row is not None for _, row in labelled):
        example_row, example_file = next(iter(rows)), image_key(candidates[0].relative, mapping.match)
        raise DataError(
            f"ingest: {mapping.file_column!r} of {metadata.name} must name files under SOURCE (match: "
            f"{mapping.match}), got no match for any of {len(candidates)} files (e.g. CSV {example_row!r} vs file "
            f"{example_file!r}). Point SOURCE at the folder the paths are relative to, or use match: basename."
        )
    return labelled


def _record(candidate: Candidate, result: Processed, fields: dict[str, Any]) -> dict[str, Any]:
    decoded = result.decoded
    return {
        "image_id": "", "path": candidate.relative, **fields,
        "manufacturer": decoded.tags.get("Manufacturer", ""),
        "lung_mask": _mask_path(candidate, "lung", result),
        "shortcut_mask": _mask_path(candidate, "shortcut", result),
        "lesion_mask": _mask_path(candidate, "lesion", result),
        "source_sha256": result.source_sha256, "pixel_sha256": result.pixel_sha256,
        "rows": result.shape[0], "columns": result.shape[1],
        "spacing_mm": decoded.spacing_mm, "spacing_source": decoded.spacing_source,
        "transfer_syntax": decoded.transfer_syntax, "bits_stored": decoded.bits_stored,
        "photometric": decoded.tags.get("PhotometricInterpretation", ""),
        "decode_notes": "; ".join(decoded.notes),
    }


def _decode_all(
    labelled: list[tuple[Candidate, dict | None]], *, config: IngestConfig, harmoniser: Harmoniser, source: Path,
    cf_listing: SourceListing | None, writer_args: dict[str, Any], workers: int, progress: bool,
    rejects: list[tuple[str, str, str]],
) -> tuple[list[dict[str, Any]], CacheWriter]:
    """Decode every candidate (process pool) into the cache, return the manifest records of the kept ones."""
    cf_pairs = pair_counterfactuals([c for c, _ in labelled], cf_listing)
    writer = CacheWriter(capacity=len(labelled), counterfactual_capacity=len(cf_pairs), **writer_args)
    # Row i of the cache belongs to candidate i and counterfactual row j to the j-th candidate with one; the workers
    # write them, finish() drops the rows that were not kept.
    cf_rows = {rel: j for j, rel in enumerate(c.relative for c, _ in labelled if c.relative in cf_pairs)}
    tasks = [
        _task(c, config, cf_pairs.get(c.relative), cache_dir=str(writer.root), row=i, cf_row=cf_rows.get(c.relative, -1))
        for i, (c, _) in enumerate(labelled)
    ]
    allowed = None if config.modalities is None else {"UNKNOWN", *(m.upper() for m in config.modalities)}
    records: list[dict[str, Any]] = []
    for (candidate, row), task, result in zip(labelled, tasks, _results(tasks, workers, progress), strict=True):
        if not result.ok:
            rejects.append((candidate.relative, result.reason, result.detail))
            continue
        rejects.extend((_rel(Path(p), source), r, d) for p, r, d in result.rejected_masks)
        fields = harmoniser.fields(row, result.decoded.tags, result.decoded.patient_id, candidate.relative)
        if fields["label"] is None:
            rejects.append((candidate.relative, "unlabelled", "no label column and no label_default in the config"))
            continue
        if allowed is not None and fields["modality"].upper() not in allowed:
            rejects.append((candidate.relative, "wrong_modality", f"{fields['modality_source']}={fields['modality']!r}"))
            continue
        record = _record(candidate, result, fields)
        record["cache_index"] = writer.mark_stored(task.row, result.mask_kinds)
        record["counterfactual_index"] = -1
        cf = result.counterfactual
        if cf is not None and cf.ok:
            record["counterfactual_index"] = task.counterfactual.row
        elif cf is not None:
            cf_root = cf_listing.root  # a counterfactual result implies its listing
            rejects.append((_rel(cf_root / cf.relative, cf_root.parent), f"counterfactual_{cf.reason}", cf.detail))
        records.append(record)
    return records, writer


def ingest_into(
    ingest_dir: Path, *, listing: SourceListing, metadata: Path | None, config: IngestConfig, salt: str,
    cf_listing: SourceListing | None, inputs_hash: str, workers: int | None, progress: bool,
) -> dict[str, Any]:
    import pandas as pd

    from pipeline.ingest.splits import assign_splits
    from pipeline.ingest.summary import build_summary
    from pipeline.manifest import COLUMNS, domain_values, write_manifest
    from pipeline.stage import write_json_atomic

    mapping = config.metadata_mapping if isinstance(config.metadata_mapping, MetadataMapping) else None
    harmoniser = Harmoniser(config, salt)
    rows, duplicate_rows = _metadata_rows(metadata, mapping)
    source = listing.root
    candidates, orphans = discover(source, listing)
    rejects: list[tuple[str, str, str]] = [(_rel(p, source), "orphan_mask", "no image beside this mask") for p in orphans]
    labelled = _match_metadata(candidates, rows, mapping, harmoniser, metadata, rejects)
    records, writer = _decode_all(
        labelled, config=config, harmoniser=harmoniser, source=source, cf_listing=cf_listing,
        writer_args={"ingest_dir": ingest_dir, "size": config.cache.size},
        workers=workers or min(os.cpu_count() or 1, 8), progress=progress, rejects=rejects,
    )
    rejects_frame = pd.DataFrame(rejects, columns=["path", "reason", "detail"])
    if not records:
        top = rejects_frame["reason"].value_counts().head(5).to_dict()
        raise DataError(
            f"ingest: SOURCE must hold at least one usable image, got none of {len(candidates)} files "
            f"({str(source)!r}; reasons: {top}). Check the modality list, the metadata file column and labels."
        )
    frame = pd.DataFrame.from_records(records)
    frame["image_id"] = _image_ids(frame["path"].tolist())
    missing = [c for c in config.domain_columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"ingest: domain_columns must name manifest columns, got unknown {missing}. Use e.g. [site] or [site, position]."
        )
    frame["domain"] = domain_values(frame, tuple(config.domain_columns))

    split = assign_splits(frame, config.splits)
    frame["split"], frame["duplicate_group"] = split.split, split.duplicate_group
    for index, why in split.dropped.items():
        rejects_frame.loc[len(rejects_frame)] = [frame.at[index, "path"], "leak_into_heldout", why]
    frame = frame.drop(index=list(split.dropped)).reset_index(drop=True)

    keep_cf = sorted(i for i in frame["counterfactual_index"].tolist() if i >= 0)
    remap, remap_cf = writer.finish(frame["cache_index"].tolist(), keep_cf, {
        "inputs_hash": inputs_hash, "aspect": config.cache.aspect, "crop_fraction": config.cache.crop_fraction,
        "intensity": "per-image min-max to [0, 1] (MONAI ScaleIntensity) after Modality LUT, VOI and MONOCHROME1",
    })
    frame["cache_index"] = frame["cache_index"].map(remap).astype("int64")
    frame["counterfactual_index"] = frame["counterfactual_index"].map(lambda i: remap_cf.get(i, -1)).astype("int64")
    frame["label"] = frame["label"].astype("int64")
    frame["age_years"] = frame["age_years"].astype("float64")
    frame = frame[[*COLUMNS, *[c for c in frame.columns if c not in COLUMNS]]]

    write_manifest(frame, ingest_dir)
    rejects_frame.sort_values(["reason", "path"]).to_csv(ingest_dir / "rejects.csv", index=False)
    summary = build_summary(
        frame, rejects_frame, min_group_size=config.min_group_size, warning_lift=config.confounding_warning_lift,
        extra={
            "source": str(source), "metadata": str(metadata) if metadata else None,
            "counterfactual_source": str(cf_listing.root) if cf_listing else None,
            "n_counterfactual": int((frame["counterfactual_index"] >= 0).sum()),
            "metadata_duplicate_rows": duplicate_rows, "domain_columns": list(config.domain_columns),
            "cache_size": config.cache.size,
        },
    )
    write_json_atomic(ingest_dir / "summary.json", summary)
    return summary


def _rel(path: Path, source: Path) -> str:
    try:
        return path.relative_to(source).as_posix()
    except ValueError:
        return str(path)


def _mask_path(candidate: Candidate, kind: str, result: Processed) -> str:
    return candidate.mask_relative[kind] if kind in result.mask_kinds else ""


def _image_ids(paths: Iterable[str]) -> list[str]:
    """The file's stem where unique across the source (synth: its image_id), else its path with '/' as '__'."""
    from pipeline.ingest.discover import image_base

    paths = list(paths)
    stems = [image_base(p.rsplit("/", 1)[-1]) for p in paths]
    seen: dict[str, int] = {}
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
    return [s if seen[s] == 1 else image_base(p).replace("/", "__") for s, p in zip(stems, paths, strict=True)]
