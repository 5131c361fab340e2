"""Result tables of sweeps: per selection rule, one row per algorithm, one column per test hospital, then the
average and the worst hospital; each cell the test accuracy (%) as mean +- sd over seeds of the hparam draw that the
rule chose for that algorithm and hospital (``pipeline.train.sweep.select_across_runs``: the best mean selection
score over seeds), with the chosen hparams beside it.

A sweep with ``--leave-one-hospital-out`` has one column per held-out hospital (its ``holdout_acc``); a plain sweep
has one column, the ingest's test split (``test_acc``), keyed "test" and named by the test sites of the runs' ingest
("harbour (test)"; plain "test" with a note when that ingest cannot be read). The oracle rule selects on the test hospital itself: an upper
bound, labelled so. The spread over seeds is ``pipeline.artefacts.seeds.SeedSpread`` (one estimator for the
project: the sample standard deviation, n - 1, since the seeds are a sample of the training randomness; none for one
seed). A value that cannot be computed is null with a reason (JSON) and reads "not measured" in the tables, never 0.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from pipeline.artefacts.history import EvaluationLine, read_history
from pipeline.artefacts.results import NOT_MEASURED, ResultCell, ResultsFile, ResultSummary
from pipeline.artefacts.seeds import SeedSpread
from pipeline.artefacts.selection import SelectionFile
from pipeline.artefacts.stage_file import load_stage
from pipeline.errors import DataError
from pipeline.protocol.across_runs import select_across_runs
from pipeline.protocol.selection import ORACLE, RULE_NAMES, get_rule, is_upper_bound
from pipeline.stage import write_text_atomic

TEST_SPLIT = "test"  # the column of a sweep without leave-one-hospital-out
RULES = RULE_NAMES  # every rule, in table order (pipeline/protocol/selection.py)


def _sweep_files(sweep_dir: Path) -> list[Path]:
    """``sweep.json`` of SWEEP_DIR and of its direct subdirectories (one sweep per algorithm)."""
    files = [sweep_dir / "sweep.json"] + sorted(sweep_dir.glob("*/sweep.json"))
    return [f for f in files if f.is_file()]


def collect_runs(sweep_dir: str | Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(finished runs, sweep files, notes): each run with algorithm, draw, trial_seed, test_hospital, dir (resolved
    against the folder holding its sweep.json), hparams (sweep.json's entries) and selection (the run's
    selection.json); notes name run folders read from an older sweep.json's absolute or cwd-relative paths.
    DataError when SWEEP_DIR holds no sweep, an entry lacks ``algorithm``, or a run folder is missing or lies
    outside its sweep folder."""
    sweep_dir = Path(sweep_dir)
    files = _sweep_files(sweep_dir)
    if not files:
        raise DataError(f"results: SWEEP_DIR must hold sweep.json (or subdirectories with one), got none in "
                        f"{str(sweep_dir)!r}. Run `cxr-fishr train ... --sweep N --out {sweep_dir}` first.")
    runs, notes = [], []
    for path in files:
        older = []
        for entry in _read_sweep_file(path):
            if "algorithm" not in entry:
                raise DataError(f"results: every run of {path} must name its algorithm, got an entry without one "
                                "(a sweep.json from before leave-one-hospital-out). Relaunch the same sweep: "
                                "finished runs are skipped and sweep.json is rewritten.")
            run_dir, note = resolve_run_dir(entry["dir"], path)
            older += [note] if note else []
            runs.append({**entry, "dir": str(run_dir), "selection": _run_selection(run_dir, path)})
        # one note per sweep.json: its first case as the example, the count for the rest
        notes += [older[0] + (f" ({len(older)} run folders of {path} read so.)" if len(older) > 1 else "")] if older else []
    return runs, [str(f) for f in files], notes


def _read_sweep_file(path: Path) -> list[dict[str, Any]]:
    """The entries of one sweep.json (a JSON list of objects, each with at least ``dir``, as the sweep writes it).
    DataError naming the file when it is not readable JSON (truncated, half-copied) or not such a list."""
    fix = ("Relaunch the same sweep (`cxr-fishr train ... --sweep N --out` its folder): finished runs are skipped and "
           "sweep.json is rewritten.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"results: {path} must be a readable sweep.json, got {type(exc).__name__}: {exc}. {fix}"
                        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"results: {path} must be valid JSON (the sweep's list of runs), got {exc.msg} at line "
                        f"{exc.lineno} column {exc.colno}: the file is truncated or damaged. {fix}") from None
    bad = next((e for e in data if not isinstance(e, dict) or "dir" not in e), None) if isinstance(data, list) else data
    if not isinstance(data, list) or bad is not None:
        raise DataError(f"results: {path} must be a JSON list of runs, each an object with a 'dir', got "
                        f"{json.dumps(bad)[:80]}. {fix}")
    return data


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def resolve_run_dir(recorded: str, sweep_file: Path) -> tuple[Path, str | None]:
    """(run folder, note) of a sweep.json entry's ``dir``: relative to the folder holding sweep.json (since the
    sweep records it so), else (an older sweep.json: absolute or relative to the working directory) the same path
    if it lies inside the sweep folder, else the sweep folder's own ``runs/<name>`` (a copied or moved sweep),
    each with a note. DataError naming the entry when none exists inside the sweep folder: a sweep never
    tabulates another sweep's runs."""
    folder, path = sweep_file.parent, Path(recorded)
    if not path.is_absolute() and _inside(folder / path, folder) and (folder / path).is_dir():
        return folder / path, None
    own = folder / "runs" / path.name
    for candidate in (path, own):
        if candidate.is_dir() and _inside(candidate, folder) and candidate.resolve() != folder.resolve():
            return candidate, (f"results: {sweep_file} records run folder {recorded!r} as an older sweep did "
                               f"(absolute or relative to the working directory); read {str(candidate)!r}. "
                               "Relaunch the sweep to record it relative to the sweep folder.")
    existing = [p for p in (path, folder / path) if p.is_dir()]  # as recorded, or relative to the sweep folder
    where = "lies outside the sweep folder" if existing else "does not exist"
    raise DataError(f"results: run folder {recorded!r} listed in {sweep_file} must lie inside the sweep folder "
                    f"{str(folder)!r}, got one that {where} (and no {str(own)!r}). A copied or moved sweep must "
                    "carry its runs/ folder; relaunch the sweep (finished runs are skipped) to rewrite sweep.json.")


def _run_selection(run_dir: Path, sweep_file: Path) -> dict[str, Any]:
    """A finished run's own selection.json (each rule's step and score), validated as SelectionFile
    (pipeline/artefacts/selection.py: a broken file is a DataError naming it); the dict select_across_runs reads."""
    path = SelectionFile.path_in(run_dir)
    if not path.is_file():
        raise DataError(f"results: run {str(run_dir)!r} listed in {sweep_file} must have selection.json, got "
                        "none. Was the run directory moved? Relaunch the sweep to rewrite sweep.json.")
    return SelectionFile.load(path).to_json_dict()


def _source_rule(rule: str, loho: bool) -> str:
    # in a leave-one-hospital-out run the held-out (test) hospital was scored by the run's leave_one_domain_out rule
    return "leave_one_domain_out" if loho and rule == "oracle" else rule


def _test_record(run_dir: Path, step: int | None, key: str) -> dict[str, Any] | None:
    """The evaluation line of history.jsonl logged at ``step`` with ``key`` (None when the run logged none)."""
    if step is None:
        return None
    line = next((line for line in read_history(run_dir)  # typed lines; a broken one is a DataError naming it
                 if isinstance(line, EvaluationLine) and line.step == step and line.value(key) is not None), None)
    return line.model_dump(mode="json") if line is not None else None


def _num_classes(run_dir: Path) -> int | None:
    """model.num_classes of the run's train config in its stage.json (None without one)."""
    stage = load_stage(run_dir)
    # the train config as a dict: results does not import the train stage's config model
    return ((stage.config or {}).get("model") or {}).get("num_classes") if stage is not None else None


def _majority(constant_accs: list[tuple[float, int | None]]) -> tuple[float | None, str | None]:
    """(always-majority accuracy % of the test hospital, reason when unknown) from constant predictors' accuracies.
    A constant predictor's accuracy is the share of the one class it predicts; with two classes the majority
    class's share is max(share, 1 - share)."""
    binary = [acc for acc, n_classes in constant_accs if n_classes == 2]
    if not binary:
        return None, "the always-majority accuracy is derived for 2 classes only (model.num_classes in stage.json)"
    return 100.0 * max(binary[0], 1.0 - binary[0]), None


def _cell(runs: list[dict[str, Any]], rule: str, loho: bool) -> dict[str, Any]:
    """The chosen draw under ``rule`` and its test accuracy per seed (mean, sd in %), or nulls with a reason.
    ``runs``: one algorithm's runs of one test hospital (a plain sweep's include its LODO hold-out runs).
    ``constant_seeds``: seeds whose selected checkpoint predicts one class at the test hospital (the one
    definition of pipeline.protocol.selection.SelectionMethod.score, the one the oracle skips), with the hospital's
    always-majority accuracy (``majority_baseline``) beside it."""
    source = _source_rule(rule, loho)
    if rule == "leave_one_domain_out" and not loho:
        # the sweep's own rule: draws ranked by their hold-out runs' scores, tested at the full runs'
        # training_domain checkpoints (pipeline.train.sweep.select_across_runs)
        choice, source = select_across_runs(runs, [rule])[rule], "training_domain"
    else:
        as_full = [{**r, "holdout": None,
                    "selection": {rule: r["selection"][source]} if source in r["selection"] else {}}
                   for r in runs if loho or r.get("holdout") is None]
        choice = select_across_runs(as_full, [rule])[rule]
    if choice.get("draw") is None:
        where = "at the test hospital" if rule == "oracle" else "on its selection set"
        return {"mean": None, "sd": None, "n_seeds": 0, "draw": None, "hparams": None, "constant_seeds": 0,
                "majority_baseline": None,
                "not_measured": f"no draw had a non-constant checkpoint under {rule} in every seed (every "
                                f"checkpoint predicted one class {where})"}
    key, test_rule = ("holdout_acc", "leave_one_domain_out") if loho else ("test_acc", "oracle")
    chosen = [r for r in runs if r["draw"] == choice["draw"] and (loho or r.get("holdout") is None)]
    records = [(Path(r["dir"]), _test_record(Path(r["dir"]), r["selection"].get(source, {}).get("step"), key))
               for r in chosen]
    scored = [(run_dir, *get_rule(test_rule).score(record)) for run_dir, record in records if record is not None]
    spread = SeedSpread.from_values([100.0 * value for _, value, _ in scored])
    constant = [(value, _num_classes(run_dir)) for run_dir, value, is_constant in scored if is_constant]
    cell = {"mean": spread.mean, "sd": spread.sd,
            "n_seeds": len(scored), "draw": choice["draw"], "hparams": choice["hparams"],
            "selection_score": choice["score"], "constant_seeds": len(constant), "majority_baseline": None}
    if len(scored) == 1:
        cell["sd_not_measured"] = "1 seed: a spread over seeds is undefined"
    if constant:
        cell["majority_baseline"], reason = _majority(constant)
        cell.update({"majority_baseline_not_measured": reason} if reason else {})
    if spread.mean is None:
        cell["not_measured"] = f"no {key} logged at the selected steps (history.jsonl)"
    return cell


def _summary(cells: dict[str, dict[str, Any]], hospitals: list[str]) -> dict[str, Any]:
    means = [cells[h]["mean"] for h in hospitals]
    if any(m is None for m in means):
        missing = [h for h, m in zip(hospitals, means, strict=True) if m is None]
        reason = f"not measured for {missing}"
        return {"average": None, "worst": None, "worst_hospital": None, "not_measured": reason}
    worst = min(range(len(means)), key=means.__getitem__)
    # averaged as measured, but named: a constant predictor's score is the hospital's class balance
    constant = [h for h in hospitals if cells[h].get("constant_seeds")]
    return {"average": sum(means) / len(means), "worst": means[worst], "worst_hospital": hospitals[worst],
            "constant_hospitals": constant}


def _run_test_sites(run_dir: Path) -> list[str] | None:
    """The test sites of the ingest a run was trained on (its stage.json's ``ingest_dir`` input: the ingest's
    summary.json, else its manifest's ``split == "test"`` rows); None when that ingest cannot be read."""
    from pipeline.artefacts.ingest_summary import IngestSummary
    from pipeline.manifest import read_manifest

    try:
        stage = load_stage(run_dir)
        ingest = stage.inputs.get("ingest_dir") if stage is not None else None
        if ingest is None:
            return None
        if IngestSummary.path_in(ingest.path).is_file():
            return sorted(IngestSummary.load(ingest.path).test_sites)
        frame = read_manifest(ingest.path)
        return sorted(str(site) for site in frame.loc[frame["split"] == "test", "site"].unique())
    except (DataError, OSError):
        return None


def test_split_label(runs: list[dict[str, Any]]) -> tuple[str, str | None]:
    """(column name of a plain sweep's test split, note): "<site>, <site> (test)" from the ingest every plain run
    was trained on; "test" with a note saying why when any run's ingest cannot be read or the runs disagree."""
    plain = [r for r in runs if not r.get("test_hospital") and r.get("holdout") is None]
    found = {r["dir"]: _run_test_sites(Path(r["dir"])) for r in plain}
    unread = [d for d, sites in found.items() if not sites]
    if unread:
        return TEST_SPLIT, (f"results: the test column is named {TEST_SPLIT!r}: the ingest of run {unread[0]!r} "
                            "could not be read (no stage.json naming its ingest_dir, or that ingest's summary.json "
                            "and manifest are missing or damaged), so its test sites are unknown.")
    kinds = {tuple(sites) for sites in found.values() if sites}
    if len(kinds) != 1:
        return TEST_SPLIT, (f"results: the test column is named {TEST_SPLIT!r}: the runs were trained on ingests "
                            f"with different test sites ({sorted(', '.join(k) for k in kinds)}).")
    return f"{', '.join(kinds.pop())} ({TEST_SPLIT})", None


def build_tables(runs: list[dict[str, Any]], sweeps: list[str] | None = None,
                 notes: list[str] | None = None) -> ResultsFile:
    """Tables over finished runs (``collect_runs``). Runs held out for leave-one-domain-out selection are not test
    results (they only rank draws under that rule); hospital columns and the test split can sit side by side."""
    loho_runs = [r for r in runs if r.get("test_hospital")]
    plain_runs = [r for r in runs if not r.get("test_hospital")]  # with any LODO hold-out runs (that rule only)
    hospitals = sorted({r["test_hospital"] for r in loho_runs}) + (
        [TEST_SPLIT] if any(r.get("holdout") is None for r in plain_runs) else [])
    algorithms = sorted({r["algorithm"] for r in runs})
    present = {rule for r in runs for rule in r["selection"]}
    rules = [rule for rule in RULES if rule in present and not (rule == "leave_one_domain_out" and loho_runs)]
    if loho_runs and "oracle" not in rules:
        rules.append("oracle")
    cells: dict[str, dict[str, dict[str, ResultCell]]] = {}
    summary: dict[str, dict[str, ResultSummary]] = {}
    for rule in rules:
        cells[rule], summary[rule] = {}, {}
        for algorithm in algorithms:
            row = {}
            for hospital in hospitals:
                group = [r for r in (plain_runs if hospital == TEST_SPLIT else loho_runs)
                         if r["algorithm"] == algorithm and (hospital == TEST_SPLIT or r["test_hospital"] == hospital)]
                row[hospital] = _cell(group, rule, loho=hospital != TEST_SPLIT)
            # validated with only the keys _cell/_summary set, so absent keys stay absent in the file
            cells[rule][algorithm] = {h: ResultCell.model_validate(c) for h, c in row.items()}
            summary[rule][algorithm] = ResultSummary.model_validate(_summary(row, hospitals))
    labels, notes = {}, list(notes or [])
    if TEST_SPLIT in hospitals:
        labels[TEST_SPLIT], note = test_split_label(runs)
        notes += [note] if note else []
    return ResultsFile(hospitals=hospitals, algorithms=algorithms, rules=rules, cells=cells, summary=summary,
                       sweeps=list(sweeps or []), notes=notes, hospital_labels=labels)


def _fmt(mean: float | None, sd: float | None = None) -> str:
    if mean is None:
        return NOT_MEASURED
    return f"{mean:.1f}" if sd is None else f"{mean:.1f} ± {sd:.1f}"


def _rule_title(rule: str) -> str:
    return f"{rule} ({ORACLE.note})" if is_upper_bound(rule) else rule


def _hparams_text(hparams: dict[str, Any] | None) -> str:
    return NOT_MEASURED if hparams is None else ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in sorted(hparams.items()))


def to_markdown(tables: ResultsFile) -> str:
    lines = ["# Results", "", "Test-hospital accuracy (%), mean ± sd over n seeds (sample sd, n - 1; none for n=1), of the "
             "hparam draw each selection rule chose per algorithm and test hospital.", ""]
    for rule in tables.rules:
        lines += [f"## Selection: {_rule_title(rule)}", "",
                  "| Algorithm | " + " | ".join(map(tables.label, tables.hospitals)) + " | Average | Worst |",
                  "|---|" + "---|" * (len(tables.hospitals) + 2)]
        for algorithm in tables.algorithms:
            row, summary = tables.cells[rule][algorithm], tables.summary[rule][algorithm]
            worst = _fmt(summary.worst) + (f" ({tables.label(summary.worst_hospital)})" if summary.worst is not None
                                           else "")
            lines.append(f"| {algorithm} | " + " | ".join(row[h].text() for h in tables.hospitals)
                         + f" | {_fmt(summary.average)} | {worst} |")
        note = tables.constant_note(rule)
        lines += ["", note] if note else []
        lines += ["", "Chosen hparams:", "", "| Algorithm | Test hospital | Draw | Seeds | Hparams |",
                  "|---|---|---|---|---|"]
        for algorithm in tables.algorithms:
            for hospital in tables.hospitals:
                cell = tables.cell(rule, algorithm, hospital)
                draw = NOT_MEASURED if cell.draw is None else str(cell.draw)
                lines.append(f"| {algorithm} | {tables.label(hospital)} | {draw} | {cell.n_seeds} | {_hparams_text(cell.hparams)} |")
        lines.append("")
    lines += [f"Note: {note}" for note in tables.notes]
    return "\n".join(lines)


TEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    """A hospital or algorithm name as LaTeX text (special characters escaped)."""
    return "".join(TEX_ESCAPES.get(char, char) for char in text)


def _tex_cell(mean: float | None, sd: float | None = None) -> str:
    if mean is None:
        return NOT_MEASURED
    return f"{mean:.1f}" if sd is None else f"{mean:.1f} $\\pm$ {sd:.1f}"


def to_latex(tables: ResultsFile) -> str:
    out = ["% cxr-fishr results: test-hospital accuracy (%), mean $\\pm$ sample sd (n - 1) over seeds"]
    for rule in tables.rules:
        out += [f"% selection: {_rule_title(rule)}", "\\begin{tabular}{l" + "c" * (len(tables.hospitals) + 2) + "}",
                "\\toprule", "Algorithm & " + " & ".join(_tex(tables.label(h)) for h in tables.hospitals) + " & Avg & Worst \\\\",
                "\\midrule"]
        for algorithm in tables.algorithms:
            row, summary = tables.cells[rule][algorithm], tables.summary[rule][algorithm]
            out.append(f"{_tex(algorithm)} & " + " & ".join(_tex(row[h].text()).replace("±", "$\\pm$")
                                                           for h in tables.hospitals)
                       + f" & {_tex_cell(summary.average)} & {_tex_cell(summary.worst)} \\\\")
        out += ["\\bottomrule", "\\end{tabular}"]
        note = tables.constant_note(rule)
        out += [f"% {note}"] if note else []
        out.append("")
    return "\n".join(out)


def to_csv(tables: ResultsFile) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["selection_rule", "algorithm", "test_hospital", "accuracy_mean", "accuracy_sd", "n_seeds",
                     "draw", "hparams", "worst_hospital", "constant_seeds", "majority_baseline", "not_measured"])
    for rule in tables.rules:
        for algorithm in tables.algorithms:
            for hospital in tables.hospitals:
                c = tables.cell(rule, algorithm, hospital)
                writer.writerow([rule, algorithm, tables.label(hospital), "" if c.mean is None else c.mean,
                                 "" if c.sd is None else c.sd, c.n_seeds, "" if c.draw is None else c.draw,
                                 "" if c.hparams is None else json.dumps(c.hparams, sort_keys=True), "",
                                 c.constant_seeds, "" if c.majority_baseline is None else c.majority_baseline,
                                 c.not_measured or c.sd_not_measured or ""])
            s = tables.summary[rule][algorithm]
            for name, value in (("average", s.average), ("worst", s.worst)):
                worst = tables.label(s.worst_hospital) if name == "worst" and s.worst_hospital else ""
                writer.writerow([rule, algorithm, name, "" if value is None else value, "", "", "", "", worst,
                                 len(s.constant_hospitals or []), "", s.not_measured or ""])
    return buffer.getvalue()


def write_tables(tables: ResultsFile, out: str | Path) -> dict[str, Path]:
    """results.json (strict, pipeline/artefacts/results.py), results.md, results.tex, results.csv in ``out`` (each
    written atomically)."""
    out = Path(out)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "latex": out / "results.tex",
             "csv": out / "results_table.csv"}
    tables.write(paths["json"])
    write_text_atomic(paths["markdown"], to_markdown(tables))
    write_text_atomic(paths["latex"], to_latex(tables))
    write_text_atomic(paths["csv"], to_csv(tables))
    return paths
