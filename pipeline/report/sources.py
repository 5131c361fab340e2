"""What the report is about: the paths the user named must be what they claim, and every section's ingest (cohort)
is named and compared.

- ``check_paths``: ``--results`` must be a sweep folder holding ``results.json`` (a missing path, a run folder or a
  sweep not yet tabulated is a DataError: the user asked for that section explicitly); ``--ingest`` must exist and
  hold ``manifest.parquet``.
- ``section_ingests`` / ``compare_ingests``: the ingest behind evaluate, audit, the sweep results and the cohort
  section, compared by the cache's inputs hash (else the resolved folder). Ingests that differ are a warning at the
  top of the page naming both; ingests that disagree on the test site are refused (exit 2): their numbers would
  sit side by side about different test hospitals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.artefacts.results import ResultsFile
from pipeline.artefacts.stage_file import StageFile, load_stage
from pipeline.errors import DataError
from pipeline.report.loading import ReportInputs, folder_holds


def check_paths(*, results_dir: str | Path | None, ingest_dir: str | Path | None) -> ResultsFile | None:
    """DataError for an explicit ``--results`` or ``--ingest`` path that is not what it must be (module docstring);
    returns the loaded results.json (None without ``--results``) so that it is read once per report."""
    results = _check_results(Path(results_dir)) if results_dir is not None else None
    if ingest_dir is not None:
        path = Path(ingest_dir)
        if not (path / "manifest.parquet").is_file():
            what = "no such folder" if not path.exists() else "a file, not a folder" if not path.is_dir() else (
                f"the output of `cxr-fishr {held}`, without manifest.parquet" if (held := folder_holds(path))
                else "a folder without manifest.parquet")
            raise DataError(f"report: --ingest must be an ingest folder holding manifest.parquet, got {str(path)!r}: "
                            f"{what}. Pass the --out of `cxr-fishr ingest`, or leave --ingest out to use the one "
                            "evaluate/audit recorded.")
    return results


def _check_results(path: Path) -> ResultsFile:
    fix = "Pass a sweep folder (the --out of `cxr-fishr train --sweep`) after `cxr-fishr results SWEEP_DIR`."
    if not path.is_dir():
        what = "no such folder" if not path.exists() else "a file, not a folder"
        raise DataError(f"report: --results must be a sweep folder holding results.json, got {str(path)!r}: {what}. "
                        f"{fix}")
    results = ResultsFile.path_in(path)
    if not results.is_file():
        # a sweep folder holds model.pt too (a copy of its chosen model): sweep.json decides, so test it first
        what = ("a sweep without results.json: run `cxr-fishr results "
                f"{path}` first" if (path / "sweep.json").is_file() else
                "a training run folder (model.pt), not a sweep" if (path / "model.pt").is_file() else
                f"the output of `cxr-fishr {held}`, with neither results.json nor sweep.json"
                if (held := folder_holds(path)) is not None else "a folder with neither results.json nor sweep.json")
        raise DataError(f"report: --results must be a sweep folder holding results.json, got {str(path)!r}: {what}. "
                        f"{fix}")
    try:
        return ResultsFile.load(results)
    except (OSError, DataError) as exc:
        raise DataError(f"report: --results must hold the results.json of `cxr-fishr results`, got {results}: {exc}"
                        ) from None


@dataclass(frozen=True)
class IngestRef:
    """One ingest as a section sees it: its folder (as recorded), cache inputs hash and test sites (None: unknown)."""

    path: Path
    inputs_hash: str | None
    test_sites: tuple[str, ...] | None

    def label(self) -> str:
        """"runs/ing_tag (inputs hash ef540b522ed5, test site Harbour Clinic)"."""
        parts = [f"inputs hash {self.inputs_hash[:12]}" if self.inputs_hash else "inputs hash unknown"]
        if self.test_sites is not None:
            parts.append(f"test site{'s' if len(self.test_sites) > 1 else ''} {', '.join(self.test_sites)}"
                         if self.test_sites else "no test site")
        return f"{self.path} ({', '.join(parts)})"

    def same_as(self, other: IngestRef) -> bool:
        if self.inputs_hash and other.inputs_hash:
            return self.inputs_hash == other.inputs_hash
        return _resolved(self.path) == _resolved(other.path)


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return str(path)


def _cache_hash(path: Path) -> str | None:
    info = path / "cache" / "cache.json"
    try:
        value = json.loads(info.read_text(encoding="utf-8")).get("inputs_hash") if info.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
    return str(value) if value else None


def _test_sites(path: Path) -> tuple[str, ...] | None:
    manifest = path / "manifest.parquet"
    if not manifest.is_file():
        return None
    import pyarrow.parquet as pq

    if not {"site", "split"} <= set(pq.read_schema(manifest).names):
        return None
    frame = pq.read_table(manifest, columns=["site", "split"]).to_pandas()
    return tuple(sorted(frame.loc[frame["split"] == "test", "site"].astype(str).unique()))


def ingest_ref(candidates: list[Any], inputs_hash: str | None = None) -> IngestRef | None:
    """The ingest of the first candidate folder that exists (else the first named, unread); None without any."""
    paths = [Path(c) for c in candidates if isinstance(c, (str, Path)) and str(c)]
    if not paths:
        return None
    found = next((p for p in paths if (p / "manifest.parquet").is_file()), None)
    if found is None:
        return IngestRef(paths[0], inputs_hash, None)
    return IngestRef(found, inputs_hash or _cache_hash(found), _test_sites(found))


def _stage_ingest_paths(stage: StageFile | None) -> list[Path]:
    """Ingest folders a sweep's stage.json declares as its ``ingest``/``ingest_dir`` input (a folder or its
    manifest)."""
    found = []
    for key, value in (stage.inputs if stage is not None else {}).items():
        if key in ("ingest", "ingest_dir") and value.path:
            found.append(Path(value.path).parent if value.path.endswith(".parquet") else Path(value.path))
    return found


def _recorded_sweeps(results_dir: Path) -> list[str]:
    """The sweep.json files results.json names ([] when it is absent or does not validate: the section then says
    why on its own)."""
    try:
        return ResultsFile.load(results_dir).sweeps
    except (OSError, DataError):
        return []


def sweep_ingests(results_dir: Path, results: ResultsFile | None = None) -> list[IngestRef]:
    """The ingest(s) the sweeps behind ``results_dir/results.json`` trained on (their stage.json inputs);
    ``results``: that file already loaded (loaded here when None)."""
    sweeps = results.sweeps if results is not None else _recorded_sweeps(results_dir)
    folders = [results_dir, *(Path(s).parent for s in sweeps),
               *sorted(p.parent for p in results_dir.glob("*/sweep.json"))]
    refs: list[IngestRef] = []
    for folder in folders:
        ref = ingest_ref(_stage_ingest_paths(load_stage(folder)))
        if ref is not None and not any(ref.same_as(r) for r in refs):
            refs.append(ref)
    return refs


def section_ingests(inputs: ReportInputs, results_dir: str | Path | None,
                    results: ResultsFile | None = None) -> dict[str, list[IngestRef]]:
    """{section: its ingest(s)} for "evaluate", "audit", "sweep results" and "cohort" (sections without one left
    out). ``inputs``: the report's ReportInputs; ``results``: results_dir's results.json already loaded."""
    found: dict[str, list[IngestRef]] = {}
    metrics, audit = inputs.metrics, inputs.audit
    # each artefact declares its ingest (folder and cache hash); evaluate also names the sites it scored
    for section, data, sites in (("evaluate", metrics, metrics.sites if metrics else None), ("audit", audit, None)):
        if data is None:
            continue
        ref = ingest_ref([data.ingest_dir], data.ingest_hash)
        if ref is not None and ref.test_sites is None and data.split == "test" and sites:
            ref = replace(ref, test_sites=tuple(sorted(sites)))  # the folder is not reachable from here
        if ref is not None:
            found[section] = [ref]
    if results_dir is not None and (refs := sweep_ingests(Path(results_dir), results)):
        found["sweep results"] = refs
    if inputs.ingest_dir is not None and (ref := ingest_ref([inputs.ingest_dir])) is not None:
        found["cohort"] = [ref]
    return found


SECTION_WORDS = {"evaluate": "evaluate", "audit": "audit", "sweep results": "the sweep results",
                 "cohort": "the cohort section"}


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _groups(found: dict[str, list[IngestRef]]) -> list[tuple[IngestRef, list[str]]]:
    """The distinct ingests, each with the sections about it (in section order)."""
    groups: list[tuple[IngestRef, list[str]]] = []
    for section, refs in found.items():
        for ref in refs:
            group = next((g for g in groups if g[0].same_as(ref)), None)
            if group is None:
                groups.append((ref, [section]))
            elif section not in group[1]:
                group[1].append(section)
    return groups


def compare_ingests(found: dict[str, list[IngestRef]]) -> list[str]:
    """One warning naming every ingest when the sections are about more than one; DataError when two of those
    ingests both have test sites and the sites differ."""
    groups = _groups(found)
    if len(groups) < 2:
        return []
    named = [f"{_and([SECTION_WORDS.get(s, s) for s in sections])} "
             f"{'is' if sections in (['evaluate'], ['audit'], ['cohort']) else 'are'} about ingest {ref.label()}"
             for ref, sections in groups]
    for i, (a, _) in enumerate(groups):
        for b, _ in groups[i + 1:]:
            if a.test_sites and b.test_sites and a.test_sites != b.test_sites:
                raise DataError(
                    f"report: every section must be about the same test hospital, got: {'; '.join(named)}. Run "
                    "evaluate, audit and the sweep on one ingest, or make one report per ingest.")
    return [f"Different cohorts: {'; '.join(named)}. Their numbers are not about the same images: do not compare "
            "them."]


def ingest_lines(found: dict[str, list[IngestRef]]) -> dict[str, str]:
    """{section: "Ingest: <label>"} for the line each section shows under its heading."""
    return {section: "Ingest: " + "; ".join(r.label() for r in refs) for section, refs in found.items()}
