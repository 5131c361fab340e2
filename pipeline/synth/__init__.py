"""`cxr-fishr synth`: the synthetic multi-site chest X-ray cohort (design: docs/design/cohort.md, usage: docs/synth.md).

``run(config=..., out=...)`` writes ``OUT/dicom/<site>/<image_id>.dcm`` with lung, shortcut and lesion masks beside
each, optional position counterfactuals under ``OUT/counterfactual/``, ``labels.csv`` (what a hospital provides),
``truth.csv`` (every generative factor), ``cohort.yaml`` (the resolved config) and ``stage.json`` (last).

Reuse follows the stage runner's one rule (``pipeline/stage.py``, :func:`stage`): a cohort whose ``stage.json``
carries the fingerprint of the same resolved config and generator version is not touched. Inside a rendering, the
per-site fingerprints of ``.synth_state.json`` (``cohort.site_fingerprint``) keep the images of unchanged sites:
that is the compute step's own resume (growing a cohort renders only the new patients), not a second reuse rule.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.synth.config import CohortConfig, load_cohort_config

if TYPE_CHECKING:
    from pipeline.stage import Stage

__all__ = ["SynthResult", "run", "stage", "CohortConfig", "load_cohort_config"]

TRUTH_COLUMNS = (
    "image_id", "site", "institution", "role", "index", "seed", "position", "view", "age_years", "age_group", "sex",
    "label", "finding", "opacity_present", "devices_present", "stamp_present", "path", "counterfactual_path",
    "counterfactual_position", "lung_mask", "shortcut_mask", "lesion_mask",
)


@dataclass(frozen=True)
class SynthResult:
    out: Path
    config: CohortConfig
    n_images: int  # originals in the cohort
    n_rendered: int  # images rendered by this call (originals + counterfactuals), the rest were kept
    seconds: float
    reused: bool = False  # the whole cohort was current (stage.json's fingerprint): nothing was written

    @property
    def images_per_second(self) -> float:
        return self.n_rendered / self.seconds if self.seconds > 0 else float("nan")


def _csv_text(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _truth_rows(config: CohortConfig, factors: list) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from pipeline.regions import LESION_MASK_SUFFIX, LUNG_MASK_SUFFIX, SHORTCUT_MASK_SUFFIX
    from pipeline.synth.cohort import COUNTERFACTUAL_DIR, DICOM_DIR
    from pipeline.synth.factors import other_position

    truth, labels = [], []
    for f in factors:
        site = config.site(f.site)
        stem = f"{DICOM_DIR}/{f.site}/{f.image_id}"
        finding = "COVID-19" if f.label else "No Finding"
        cf = config.counterfactual == "position"
        truth.append({
            "image_id": f.image_id, "site": f.site, "institution": site.institution, "role": site.role,
            "index": f.index, "seed": f.seed, "position": f.position, "view": f.view, "age_years": f.age_years,
            "age_group": "child" if f.child else "adult", "sex": f.sex, "label": f.label, "finding": finding,
            "opacity_present": int(f.opacity_present), "devices_present": int(f.devices_present),
            "stamp_present": int(f.stamp_present), "path": f"{stem}.dcm",
            "counterfactual_path": f"{COUNTERFACTUAL_DIR}/{f.site}/{f.image_id}.dcm" if cf else "",
            "counterfactual_position": other_position(f.position) if cf else "",
            "lung_mask": stem + LUNG_MASK_SUFFIX, "shortcut_mask": stem + SHORTCUT_MASK_SUFFIX,
            "lesion_mask": stem + LESION_MASK_SUFFIX,
        })
        labels.append({"file": f"{f.site}/{f.image_id}.dcm", "finding": finding})
    return truth, labels


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"synth: --out must be a directory, got the file {str(out)!r}. Choose another path.")


def stage(
    *,
    config: str | Path | CohortConfig | dict[str, Any],
    out: str | Path,
    n_per_site: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    counterfactual: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Stage:
    """The synth stage's declaration for the stage runner: its fingerprint is the resolved cohort config (every
    option applied) and the generator version; ``workers`` and ``progress`` change speed only. ConfigError for an
    invalid config or ``workers < 1``, before anything is written."""
    cohort_config = load_cohort_config(config, n_per_site=n_per_site, size=size, seed=seed,
                                       counterfactual=counterfactual)
    return _declare(cohort_config, config=config, out=out, workers=workers, progress=progress)


def _declare(cohort_config: CohortConfig, *, config: Any, out: str | Path, workers: int | None, progress: bool
             ) -> Stage:
    from pipeline.stage import Stage
    from pipeline.synth.cohort import GENERATOR_VERSION

    if workers is not None and workers < 1:
        raise ConfigError(f"synth: workers must be >= 1, got {workers!r}. Leave it out to use every core.")
    out = Path(out)
    _check_out(out)
    inputs = {"config": config} if isinstance(config, (str, Path)) else {}
    return Stage(name="synth", out=out, config=cohort_config.model_dump(mode="json"), seed=cohort_config.seed,
                 code=f"generator {GENERATOR_VERSION}",
                 compute=functools.partial(_render, cohort_config=cohort_config, inputs=inputs,
                                           workers=workers, progress=progress))


def run(
    *,
    config: str | Path | CohortConfig | dict[str, Any],
    out: str | Path,
    n_per_site: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    counterfactual: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SynthResult:
    """Render the cohort into ``out``. Options given here override the config file; nothing is written if the
    config is invalid. A cohort current under the same fingerprint is reused as it is (``reused``); otherwise files
    of an earlier run with the same seed, size and site settings are kept (not re-rendered), so a cohort can be
    extended by raising ``n``."""
    from pipeline.stage import is_fresh

    cohort_config = load_cohort_config(config, n_per_site=n_per_site, size=size, seed=seed,
                                       counterfactual=counterfactual)
    declared = _declare(cohort_config, config=config, out=out, workers=workers, progress=progress)
    fingerprint = declared.fingerprint()
    if is_fresh(declared.out, fingerprint):
        with open(declared.out / "truth.csv", newline="", encoding="utf-8") as handle:
            n_images = sum(1 for _ in csv.DictReader(handle))
        print(f"synth: inputs unchanged, reusing {declared.out} ({n_images} images).", file=sys.stderr)
        return SynthResult(out=declared.out, config=cohort_config, n_images=n_images,
                           n_rendered=0, seconds=0.0, reused=True)
    return declared.compute(declared.out, fingerprint=fingerprint)


def _render(out: Path, *, cohort_config: CohortConfig, inputs: dict[str, Any], workers: int | None, progress: bool,
            fingerprint: str | None = None) -> SynthResult:
    """The compute step: render what is missing or stale (per site), write the CSVs, cohort.yaml and stage.json."""
    import yaml

    from pipeline.stage import StageRecord, write_json_atomic, write_text_atomic
    from pipeline.synth import cohort

    n_workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    with StageRecord("synth", out, config=cohort_config, seed=cohort_config.seed, inputs=inputs,
                     fingerprint=fingerprint) as record:
        state_path = out / cohort.STATE_FILE
        previous: dict[str, str] = {}
        if state_path.is_file():
            previous = json.loads(state_path.read_text(encoding="utf-8")).get("fingerprints", {})
            state_path.unlink()  # until this run finishes, no file may be trusted as current
        cohort.remove_stale(cohort_config, out)
        factors, tasks = cohort.plan(cohort_config, out, previous)
        rendered = cohort.render_tasks(cohort_config, out, tasks, n_workers, progress=progress)
        truth, labels = _truth_rows(cohort_config, factors)
        write_text_atomic(out / "truth.csv", _csv_text(TRUTH_COLUMNS, truth))
        write_text_atomic(out / "labels.csv", _csv_text(("file", "finding"), labels))
        write_text_atomic(out / "cohort.yaml", yaml.safe_dump(cohort_config.model_dump(mode="json"), sort_keys=False))
        fingerprints = {s.name: cohort.site_fingerprint(cohort_config, s) for s in cohort_config.sites}
        write_json_atomic(state_path, {"fingerprints": fingerprints})
        seconds = time.perf_counter() - start
        record.extra["counts"] = _counts(truth)
        record.extra["rendered"] = rendered
        record.extra["kept"] = len(factors) * (2 if cohort_config.counterfactual else 1) - rendered
        record.extra["workers"] = n_workers
        record.extra["images_per_second"] = round(rendered / seconds, 2) if seconds > 0 and rendered else None
    return SynthResult(out=out, config=cohort_config, n_images=len(factors), n_rendered=rendered, seconds=seconds)


def _counts(truth: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Images per site x position x label (the confounding table, as generated)."""
    counts: dict[str, dict[str, int]] = {}
    for row in truth:
        key = f"{row['position']}|{row['label']}"
        counts.setdefault(row["site"], {}).setdefault(key, 0)
        counts[row["site"]][key] += 1
    return counts
