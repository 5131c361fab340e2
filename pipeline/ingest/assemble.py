"""The body of an ingest: find files, decode them in a process pool into the cache, derive fields, split, write.

Writes into ``ingest_dir`` (a temporary folder that :mod:`pipeline.ingest.runner` swaps in at the end).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.artefacts.ingest_summary import IngestSummary
from pipeline.errors import ConfigError, DataError
from pipeline.ingest.cache_writer import CacheWriter
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.csv_source import check_label_values, index_metadata, label_values_present, read_table
from pipeline.ingest.dicom import scrub_values
from pipeline.ingest.disagreements import Disagreement
from pipeline.ingest.disagreements import find as find_disagreements
from pipeline.ingest.disagreements import summarise as summarise_disagreements
from pipeline.ingest.discover import Candidate, SourceListing, discover, pair_counterfactuals
from pipeline.ingest.fields import Harmoniser
from pipeline.ingest.harmonise import clean
from pipeline.ingest.matching import N_EXAMPLES, MatchReport, match_metadata, row_patient
from pipeline.ingest.names import NameLog, check_site_map, resolve
from pipeline.ingest.preprocess import Processed, Task, init_worker, process, release_cache_files, worker_settings
from pipeline.ingest.privacy import PathScrubber, header_tokens
from pipeline.ingest.sources import SourceInputs
from pipeline.ingest.spellings import Merged, merge_spellings
from pipeline.names import norm_key

SERIAL_BELOW = 24  # a pool costs more than it saves on a handful of files
REJECT_COLUMNS = ("path", "reason", "detail")  # rejects.csv


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


Item = tuple[Candidate, "dict | None", Harmoniser]  # a file, its CSV row, and how its source reads fields


@dataclass
class Gathered:
    """Every source's files matched with their CSV rows, before decoding, and the account of what was left out."""

    items: list[Item] = field(default_factory=list)
    rejects: list[tuple[str, str, str]] = field(default_factory=list)
    report: MatchReport = field(default_factory=MatchReport)
    raw_sites: set[str] = field(default_factory=set)  # site names in the CSVs and constants (site_map keys)
    harmonisers: list[Harmoniser] = field(default_factory=list)
    per_source: list[dict[str, Any]] = field(default_factory=list)
    path_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_files: int = 0
    skipped: list[str] = field(default_factory=list)  # files plainly not images (CSV, .DS_Store, ...), not rejects
    names: NameLog = field(default_factory=NameLog)  # config names found only by ignoring case/whitespace
    files: dict[str, str] = field(default_factory=dict)  # manifest path -> the file to open (every candidate)


def _path_field_report(candidates: list[Candidate], harmoniser: Harmoniser, name: str) -> dict[str, dict[str, Any]]:
    """Per configured path field: files matched / not matched (examples); a pattern matching no file is an error."""
    out: dict[str, dict[str, Any]] = {}
    for field_name, pattern in harmoniser.config.path_fields.items():
        misses = [c.relative for c in candidates if harmoniser.path_values(c.local)[field_name][0] is None]
        if candidates and len(misses) == len(candidates):
            raise ConfigError(
                f"ingest: path_fields.{field_name} must match some file's path under "
                f"{repr(name) if name else 'SOURCE'}, got {pattern!r} matching none of {len(candidates)} files "
                f"(e.g. {candidates[0].local!r}). Fix the pattern (it is searched in the relative path)."
            )
        out[field_name] = {"pattern": pattern, "matched": len(candidates) - len(misses), "unmatched": len(misses),
                           "unmatched_examples": misses[:N_EXAMPLES]}
    return out


def _gather(sources: list[SourceInputs], salt: str) -> Gathered:
    gathered = Gathered()
    label_tables = []
    for src in sources:
        harmoniser = Harmoniser(src.config, salt)
        gathered.harmonisers.append(harmoniser)
        candidates, orphans = discover(src.root, src.listing, name=src.name, skipped=gathered.skipped)
        gathered.n_files += len(candidates)
        gathered.files.update((c.relative, c.path) for c in candidates)
        gathered.rejects += [(p, "orphan_mask", "no image beside this mask") for p in orphans]
        index = None
        if src.metadata is not None and src.mapping is not None:
            key = f"sources[{src.name}].metadata_mapping" if src.name else "metadata_mapping"
            table = read_table(src.metadata, src.mapping, log=gathered.names, key=key)
            where = f"source {src.name!r}, {src.metadata}" if src.name else str(src.metadata)
            label_tables.append((src.mapping, label_values_present(table, src.mapping), where))
            if src.mapping.site_column:
                # cleaned like the harmoniser's (whitespace collapsed), so error messages list one spelling each
                gathered.raw_sites.update(filter(None, map(clean, table[src.mapping.site_column].unique())))
            index = index_metadata(table, src.mapping)
        for constant in (src.config.site_constant, src.mapping.site_constant if src.mapping else None):
            if constant:
                gathered.raw_sites.add(constant)
        for field_name, info in _path_field_report(candidates, harmoniser, src.name).items():
            gathered.path_fields[f"{src.name}:{field_name}" if src.name else field_name] = info
        kept, report = match_metadata(candidates, index, src.mapping, harmoniser, src.metadata, gathered.rejects)
        gathered.report.merge(report)
        gathered.items += [(c, row, harmoniser) for c, row in kept]
        gathered.per_source.append({
            "name": src.name, "path": str(src.root), "metadata": str(src.metadata) if src.metadata else None,
            "n_files": len(candidates), **_report_json(report),
        })
    check_label_values(label_tables, log=gathered.names)
    return gathered


def _report_json(report: MatchReport) -> dict[str, Any]:
    return {
        "metadata_rows": report.n_rows, "metadata_rows_matched": report.n_rows_matched,
        "metadata_rows_without_image": {"n": report.n_without_image, "examples": report.without_image[:N_EXAMPLES]},
        "metadata_duplicate_rows": report.duplicate_rows, "conflicting_metadata_rows": report.conflicting_files,
    }


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
    items: list[Item], *, config: IngestConfig, cf_listing: SourceListing | None, writer_args: dict[str, Any],
    workers: int, progress: bool, rejects: list[tuple[str, str, str]], disagreements: list[Disagreement],
    scrubber: PathScrubber,
) -> tuple[list[dict[str, Any]], CacheWriter]:
    """Decode every candidate (process pool) into the cache, return the manifest records of the kept ones."""
    cf_pairs = pair_counterfactuals([c for c, _, _ in items], cf_listing)
    writer = CacheWriter(capacity=len(items), counterfactual_capacity=len(cf_pairs), **writer_args)
    # Row i of the cache belongs to candidate i and counterfactual row j to the j-th candidate with one; the workers
    # write them, finish() drops the rows that were not kept.
    cf_rows = {rel: j for j, rel in enumerate(c.relative for c, _, _ in items if c.relative in cf_pairs)}
    tasks = [
        _task(c, config, cf_pairs.get(c.relative), cache_dir=str(writer.root), row=i, cf_row=cf_rows.get(c.relative, -1))
        for i, (c, _, _) in enumerate(items)
    ]
    allowed = None if config.modalities is None else {"UNKNOWN", *(m.upper() for m in config.modalities)}
    records: list[dict[str, Any]] = []
    for (candidate, row, harmoniser), task, result in zip(items, tasks, _results(tasks, workers, progress), strict=True):
        tokens = (*result.patient_tokens, *row_patient(row, harmoniser))
        path = scrubber.path(candidate.relative, tokens)
        if not result.ok:
            rejects.append((path, result.reason, scrub_values(result.detail, tokens)))  # the CSV patient value too
            continue
        head = candidate.relative[: candidate.inner]  # '<source>/' with several sources
        rejects.extend((head + _rel(Path(p), Path(candidate.prefix)), r, d) for p, r, d in result.rejected_masks)
        fields = harmoniser.fields(
            row, result.decoded.tags, result.decoded.patient_id, candidate.relative, relative=candidate.local
        )
        if allowed is not None and fields["modality"].upper() not in allowed:
            detail = f"{fields['modality_source']}={fields['modality']!r}"
            rejects.append((path, "wrong_modality", scrub_values(detail, tokens)))
            continue
        disagreements += [d.scrubbed(tokens) for d in find_disagreements(path, fields, harmoniser.tag_values(
            result.decoded.tags, result.decoded.patient_id, fields["view"]))]
        record = _record(candidate, result, fields)
        record["path"] = path
        for kind in ("lung_mask", "shortcut_mask", "lesion_mask"):
            record[kind] = scrubber.beside(record[kind], tokens) if record[kind] else ""
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


# harmonised text fields whose spellings are merged (besides the configured domain columns and shortcut attributes)
MERGED_FIELDS = ("site", "view", "sex", "modality", "manufacturer")


def _resolve_columns(frame: Any, config: IngestConfig, gathered: Gathered, log: NameLog) -> IngestConfig:
    """site_map keys checked against the raw sites; domain_columns and shortcut_attributes as the manifest spells
    them (ignoring case/whitespace, logged); ConfigError for a name matching nothing."""
    raw_sites = set(gathered.raw_sites).union(*(h.raw_sites for h in gathered.harmonisers))
    check_site_map(config.site_map, raw_sites, log=log)
    columns = list(frame.columns)
    domain_columns = resolve(config.domain_columns, columns, key="domain_columns", log=log)
    attributes = resolve(config.shortcut_attributes, columns, key="shortcut_attributes", log=log)
    return config.model_copy(update={"domain_columns": domain_columns, "shortcut_attributes": attributes})


def _merge_spellings(frame: Any, config: IngestConfig) -> Merged:
    """One spelling per value of every harmonised text field that becomes a domain or shortcut attribute (in place);
    the site_map's and view/sex maps' values are the preferred spellings."""
    preferred = {"site": set(config.site_map.values()), "view": set(config.view_map.values()),
                 "sex": set(config.sex_map.values())}
    fields = [*MERGED_FIELDS, *config.domain_columns, *config.shortcut_attributes]
    return merge_spellings(frame, fields=fields, preferred=preferred)


def _resolve_sites(frame: Any, config: IngestConfig, log: NameLog) -> IngestConfig:
    """test_sites / ood_val_sites as the (merged) data spells them, also through site_map keys."""
    sites = sorted(set(frame["site"].astype(str)))
    test = resolve(config.splits.test_sites, sites, key="splits.test_sites", log=log, aliases=config.site_map)
    ood = resolve(config.splits.ood_val_sites, sites, key="splits.ood_val_sites", log=log, aliases=config.site_map)
    if set(test) & set(ood):
        raise ConfigError(f"ingest: splits.test_sites and ood_val_sites must not share a site, got {sorted(set(test) & set(ood))} "
                          "in both (after matching names case-insensitively). Keep each site in one list.")
    return config.model_copy(update={"splits": config.splits.model_copy(update={"test_sites": test,
                                                                                 "ood_val_sites": ood})})


def _reject_conflicting_duplicates(frame: Any, rejects_frame: Any) -> tuple[Any, dict[str, int]]:
    """Rows of identical-pixel groups whose known labels disagree moved to the rejects (reason
    ``conflicting_duplicate_labels``); returns the kept frame (index reset) and the counts for summary.json."""
    from pipeline.ingest.splits import conflicting_duplicates

    conflicts = conflicting_duplicates(frame)
    for index, why in conflicts.items():
        rejects_frame.loc[len(rejects_frame)] = [frame.at[index, "path"], "conflicting_duplicate_labels", why]
    groups = int(frame.loc[list(conflicts), "pixel_sha256"].nunique()) if conflicts else 0
    return frame.drop(index=list(conflicts)).reset_index(drop=True), {"groups": groups, "images": len(conflicts)}


def ingest_into(
    ingest_dir: Path, *, sources: list[SourceInputs], config: IngestConfig, salt: str,
    cf_listing: SourceListing | None, inputs_hash: str, workers: int | None, progress: bool,
) -> IngestSummary:
    """Find every source's files and CSV rows, decode the images into the cache, derive and harmonise the fields,
    split, trim the cache to the kept rows, and write manifest.parquet, rejects.csv and summary.json into
    ``ingest_dir``. DataError when no usable image is left."""
    import pandas as pd

    from pipeline.ingest.summary import build_summary
    from pipeline.manifest import write_manifest

    gathered = _gather(sources, salt)
    scrubber = PathScrubber(salt)
    rejects = _scrub_early_rejects(gathered, scrubber)
    disagreements: list[Disagreement] = []
    records, writer = _decode_all(
        gathered.items, config=config, cf_listing=cf_listing,
        writer_args={"ingest_dir": ingest_dir, "size": config.cache.size},
        workers=workers or min(os.cpu_count() or 1, 8), progress=progress, rejects=rejects,
        disagreements=disagreements, scrubber=scrubber,
    )
    rejects_frame = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    where = ", ".join(repr(str(s.root)) for s in sources)
    _require_records(records, rejects_frame, gathered, where)
    frame = _records_frame(records, scrubber)
    config, merged = _harmonise_names(frame, config, gathered)
    frame, conflicting = _reject_conflicting_duplicates(frame, rejects_frame)
    if frame.empty:
        raise DataError(f"ingest: SOURCE must hold at least one usable image, got none of {gathered.n_files} files "
                        f"({where}): every image is an identical copy of another with a different label. Fix the labels.")
    frame = _split(frame, config, rejects_frame)
    frame = _trim_cache(frame, writer, config, inputs_hash)

    write_manifest(frame, ingest_dir)
    _write_rejects(rejects_frame, scrubber, ingest_dir)
    single = sources[0] if len(sources) == 1 and not sources[0].name else None
    summary = build_summary(
        frame, rejects_frame, shortcut_attributes=list(config.shortcut_attributes),
        min_group_size=config.min_group_size, warning_auroc=config.confounding_warning_auroc,
        warning_lift=config.confounding_warning_lift,
        extra=_account(single=single, gathered=gathered, cf_listing=cf_listing, frame=frame, config=config,
                       merged=merged, conflicting=conflicting, scrubber=scrubber, disagreements=disagreements),
        collections=frame["path"].str.split("/", n=1).str[0] if single is None else None,
        scrub=scrubber.deep,  # examples (unmatched path_fields, CSV rows) may repeat a scrubbed name
    )
    summary.write(ingest_dir)
    return summary


def _require_records(records: list[dict[str, Any]], rejects_frame: Any, gathered: Gathered, where: str) -> None:
    """DataError naming the sources and the top reject reasons when no image was kept."""
    if records:
        return
    top = rejects_frame["reason"].value_counts().head(5).to_dict()
    raise DataError(
        f"ingest: SOURCE must hold at least one usable image, got none of {gathered.n_files} files "
        f"({where}; reasons: {top}{_skipped_text(gathered.skipped)}). Check the modality list, the metadata file "
        "column and labels."
    )


def _records_frame(records: list[dict[str, Any]], scrubber: PathScrubber) -> Any:
    """The decoded images' records as a frame, with their image_id (unique, scrubbed of patient identifiers)."""
    import pandas as pd

    frame = pd.DataFrame.from_records(records)
    ids = _image_ids(frame["path"].tolist())
    frame["image_id"] = [scrubber.image_id(p, i) for p, i in zip(frame["path"], ids, strict=True)]
    return frame


def _harmonise_names(frame: Any, config: IngestConfig, gathered: Gathered) -> tuple[IngestConfig, Merged]:
    """Config names resolved against the data, spellings merged (in place), then the ``domain`` column; returns the
    config as the data spells it and the merges."""
    from pipeline.manifest import domain_values

    config = _resolve_columns(frame, config, gathered, gathered.names)
    merged = _merge_spellings(frame, config)
    config = _resolve_sites(frame, config, gathered.names)
    frame["domain"] = domain_values(frame, tuple(config.domain_columns))
    return config, merged


def _split(frame: Any, config: IngestConfig, rejects_frame: Any) -> Any:
    """``split`` and ``duplicate_group`` columns; rows leaking into a held-out site moved to the rejects."""
    from pipeline.ingest.splits import assign_splits

    split = assign_splits(frame, config.splits)
    frame["split"], frame["duplicate_group"] = split.split, split.duplicate_group
    for index, why in split.dropped.items():
        rejects_frame.loc[len(rejects_frame)] = [frame.at[index, "path"], "leak_into_heldout", why]
    return frame.drop(index=list(split.dropped)).reset_index(drop=True)


def _trim_cache(frame: Any, writer: CacheWriter, config: IngestConfig, inputs_hash: str) -> Any:
    """Keep the cache rows of the kept images (cache.json written last), point the manifest at their new rows, and
    give the manifest its dtypes and column order."""
    from pipeline.manifest import COLUMNS

    keep_cf = sorted(i for i in frame["counterfactual_index"].tolist() if i >= 0)
    remap, remap_cf = writer.finish(frame["cache_index"].tolist(), keep_cf, {
        "inputs_hash": inputs_hash, "aspect": config.cache.aspect, "crop_fraction": config.cache.crop_fraction,
        "intensity": "per-image min-max to [0, 1] (MONAI ScaleIntensity) after Modality LUT, VOI and MONOCHROME1",
    })
    frame["cache_index"] = frame["cache_index"].map(remap).astype("int64")
    frame["counterfactual_index"] = frame["counterfactual_index"].map(lambda i: remap_cf.get(i, -1)).astype("int64")
    frame["label"] = frame["label"].astype("Int64")  # pd.NA = unknown (kept, split, never trained on)
    frame["age_years"] = frame["age_years"].astype("float64")
    return frame[[*COLUMNS, *[c for c in frame.columns if c not in COLUMNS]]]


def _write_rejects(rejects_frame: Any, scrubber: PathScrubber, ingest_dir: Path) -> None:
    for column in ("path", "detail"):  # any identifier found in a file name, wherever a reject repeats it
        rejects_frame[column] = rejects_frame[column].astype(str).map(scrubber.text)
    rejects_frame.sort_values(["reason", "path"]).to_csv(ingest_dir / "rejects.csv", index=False)


def _account(
    *, single: SourceInputs | None, gathered: Gathered, cf_listing: SourceListing | None, frame: Any,
    config: IngestConfig, merged: Merged, conflicting: dict[str, int], scrubber: PathScrubber,
    disagreements: list[Disagreement],
) -> dict[str, Any]:
    """summary.json's account of the inputs (beside the counts of :func:`pipeline.ingest.summary.build_summary`):
    sources, CSV rows, path fields, names resolved, spellings merged, conflicts, privacy, disagreements.
    ``single``: the one unnamed SOURCE, None with ``sources:``."""
    return {
        "source": str(single.root) if single else [s["path"] for s in gathered.per_source],
        "metadata": (str(single.metadata) if single.metadata else None) if single else
        [s["metadata"] for s in gathered.per_source],
        **({"sources": gathered.per_source} if single is None else {}),
        "counterfactual_source": str(cf_listing.root) if cf_listing else None,
        "n_counterfactual": int((frame["counterfactual_index"] >= 0).sum()),
        **_report_json(gathered.report), "path_fields": gathered.path_fields,
        "config_names_resolved": gathered.names.as_json(), "domain_columns": list(config.domain_columns),
        "test_sites": list(config.splits.test_sites), "ood_val_sites": list(config.splits.ood_val_sites),
        "cache_size": config.cache.size,
        "skipped_non_image_files": {"n": len(gathered.skipped), "examples": gathered.skipped[:N_EXAMPLES]},
        "merged_spellings": merged.spellings, "merged_spelling_images": merged.images,
        "conflicting_duplicate_labels": conflicting,
        "patient_identifiers_in_file_names": scrubber.as_json(),
        "field_disagreements": summarise_disagreements(
            disagreements, kept_paths=set(frame["path"]), heldout=_heldout_sides(config)),
    }


def _scrub_early_rejects(gathered: Gathered, scrubber: PathScrubber) -> list[tuple[str, str, str]]:
    """The rejects made before decoding (no CSV row, unmapped label, ...) with their file names scrubbed of the
    identifiers in their DICOM header (read up to the pixels: these files are few); the list decoding appends to."""
    out = []
    for path, reason, detail in gathered.rejects:
        tokens = header_tokens(gathered.files[path]) if path in gathered.files else ()
        scrubbed = scrubber.path(path, tokens)
        detail = scrub_values(detail, tokens)  # a header value quoted in the detail (a Modality equal to a name part)
        out.append((scrubbed, reason, scrubber.text(detail) if scrubbed != path else detail))
    return out


def _heldout_sides(config: IngestConfig) -> dict[str, str]:
    """Normalised held-out site name (as resolved, and each site_map key naming it) -> 'test' | 'ood_val'."""
    sides = {}
    for side, sites in (("test", config.splits.test_sites), ("ood_val", config.splits.ood_val_sites)):
        for site in sites:
            sides[norm_key(site)] = side
            sides.update({norm_key(k): side for k, v in config.site_map.items() if norm_key(v) == norm_key(site)})
    return sides


def _skipped_text(skipped: list[str]) -> str:
    """'; 3 more files skipped as not images (e.g. a.csv, b.txt)' or ''."""
    if not skipped:
        return ""
    return f"; {len(skipped)} more files skipped as not images (e.g. {', '.join(skipped[:3])})"


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
