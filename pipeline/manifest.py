"""The manifest: one row per ingested image, the contract between ingest and every later stage.

Columns (docs/design/architecture.md, plus ``lesion_mask`` and ``counterfactual_index``)::

    image_id, path, patient_key (salted hash), site, modality, manufacturer, view, position, age_years, age_group,
    sex, label, label_name, domain, split, lung_mask, shortcut_mask, lesion_mask, source_sha256, cache_index,
    counterfactual_index

``position`` is one of erect|supine|unknown, ``age_group`` one of child|adult|unknown, ``split`` one of
train|val|ood_val|test, ``label`` 0|1|<NA> (pandas nullable ``Int64``; ``pd.NA`` = unknown: unlabelled images are
kept, split and audited, but only :func:`labelled` rows can be trained or scored). ``age_years`` is float (NaN = unknown). Mask columns hold paths or "".
Extra columns (``*_source`` provenance of derived fields, ...) are allowed and kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1
MANIFEST_FILENAME = "manifest.parquet"

COLUMNS = (
    "image_id", "path", "patient_key", "site", "modality", "manufacturer", "view", "position", "age_years",
    "age_group", "sex", "label", "label_name", "domain", "split", "lung_mask", "shortcut_mask", "lesion_mask",
    "source_sha256", "cache_index", "counterfactual_index",
)
POSITIONS = ("erect", "supine", "unknown")
AGE_GROUPS = ("child", "adult", "unknown")
SPLITS = ("train", "val", "ood_val", "test")


def validate_manifest(frame: pd.DataFrame, where: str = "manifest") -> None:
    """Raise :class:`DataError` naming the first broken rule; return None when the manifest is well-formed."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"manifest: columns {missing} must be present, got {list(frame.columns)} ({where}).")
    for column, allowed in (("position", POSITIONS), ("age_group", AGE_GROUPS), ("split", SPLITS)):
        bad = sorted(set(frame[column].astype(str)) - set(allowed))
        if bad:
            raise DataError(f"manifest: {column} must be one of {list(allowed)}, got {bad} ({where}).")
    known = frame["label"].dropna().tolist()
    bad_labels = sorted({str(v) for v in known if v not in (0, 1) or isinstance(v, bool)})
    if bad_labels:
        raise DataError(f"manifest: label must be 0 or 1 (or missing: unknown), got {bad_labels} ({where}).")
    if frame["image_id"].duplicated().any():
        dup = frame.loc[frame["image_id"].duplicated(), "image_id"].iloc[0]
        raise DataError(f"manifest: image_id must be unique, got {dup!r} twice ({where}).")
    per_patient = frame.groupby("patient_key")["split"].nunique()
    leaking = per_patient[per_patient > 1]
    if len(leaking):
        raise DataError(
            f"manifest: every patient must sit in one split, got {len(leaking)} patients in several ({where})."
        )


def require_finished_ingest(ingest_dir: str | Path) -> None:
    """DataError when ``ingest_dir`` has no ``stage.json``: ingest writes it last (pipeline/stage.py), so an ingest
    without one was interrupted or failed and its manifest and cache may be incomplete. The one check every stage
    that opens an ingest passes through (:func:`read_manifest`, :meth:`pipeline.cache.ImageCache.open`)."""
    from pipeline.stage import STAGE_FILE

    if not (Path(ingest_dir) / STAGE_FILE).is_file():
        raise DataError(f"ingest at {ingest_dir} did not finish: no {STAGE_FILE} (ingest writes it last; its manifest "
                        f"and cache may be incomplete). Re-run `cxr-fishr ingest SOURCE --out {ingest_dir}`.")


def read_manifest(ingest_dir: str | Path) -> pd.DataFrame:
    """The manifest of a finished ingest (:func:`require_finished_ingest`), validated; ``label`` as nullable Int64.
    Raises DataError naming the file when it is missing, the ingest did not finish or a rule is broken."""
    import pandas as pd

    path = Path(ingest_dir) / MANIFEST_FILENAME
    if not path.is_file():
        raise DataError(f"manifest: {path} must exist, got nothing. Run `cxr-fishr ingest SOURCE --out {ingest_dir}`.")
    require_finished_ingest(ingest_dir)
    frame = pd.read_parquet(path)
    validate_manifest(frame, where=str(path))
    frame["label"] = frame["label"].astype("Int64")  # manifests written before unlabelled rows existed held int64
    return frame


def write_manifest(frame: pd.DataFrame, ingest_dir: str | Path) -> Path:
    """Validate and write the manifest atomically (Parquet, schema version in its metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.stage import atomic_path

    validate_manifest(frame)
    path = Path(ingest_dir) / MANIFEST_FILENAME
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"cxr_fishr_schema": str(SCHEMA_VERSION).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose label is known (0 or 1), index reset; the label column keeps its dtype."""
    return frame[frame["label"].notna()].reset_index(drop=True)


def n_unlabelled(frame: pd.DataFrame) -> int:
    """How many rows have an unknown label (pd.NA / NaN / None)."""
    return int(frame["label"].isna().sum())


def split_rows(frame: pd.DataFrame, split: str, *, stage: str, where: str | Path) -> pd.DataFrame:
    """The rows of one split (index reset); a split with no rows is a DataError naming the splits present."""
    rows = frame[frame["split"] == split].reset_index(drop=True)
    if len(rows) == 0:
        raise DataError(f"{stage}: split must have rows in the manifest, got none for {split!r} ({where}). "
                        f"Splits present: {sorted(frame['split'].unique())}.")
    return rows


def domain_values(frame: pd.DataFrame, domain_columns: tuple[str, ...]) -> pd.Series:
    """The domain of each row: the values of ``domain_columns`` joined by '|' (e.g. 'north|supine'); a missing value
    reads 'unknown', as the manifest spells it."""
    missing = [c for c in domain_columns if c not in frame.columns]
    if missing:
        raise DataError(f"manifest: domain columns must exist, got unknown {missing}; columns are {list(frame.columns)}.")
    first, *rest = (frame[c].astype(str).fillna("unknown") for c in domain_columns)
    # str.cat rather than agg("|".join, axis=1): the row-wise agg transposes the frame (100 ms for 500 rows)
    return first.str.cat(rest, sep="|") if rest else first
