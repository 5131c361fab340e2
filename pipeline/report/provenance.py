"""Section 5: where every number came from (stage.json of each stage), with secrets and identifiers removed."""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline.artefacts.stage_file import StageFile
from pipeline.report.loading import ReportInputs
from pipeline.report.tables import Cell, Table, cell, num_cell

# Keys whose values must never reach a report: salts (they would un-hash patient keys) and patient identifiers.
# A birth *date* is one; 'age_from_birth' / 'birth_column' only name CSV columns and stay visible.
_SECRET_KEY = re.compile(
    r"salt|secret|password|token|api_?key|patient_?(name|id)|birth_?date|date_?of_?birth", re.IGNORECASE
)
REDACTED = "[redacted]"


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced (recursively)."""
    if isinstance(value, dict):
        # a true/false switch (e.g. age_from_birth) carries no secret or identifier: shown as it is
        return {k: (REDACTED if _SECRET_KEY.search(str(k)) and not isinstance(v, bool) else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


COMMAND_WIDTH = 80  # characters of a command shown in the table; the whole command is its tooltip


def command_text(argv: list[str]) -> str:
    """A stage's command as read from its start: the program's name without its directory, then the arguments;
    a long one is cut at the right with "…" (cutting the left would hide the subcommand)."""
    if not argv:
        return ""
    words = [str(argv[0]).replace("\\", "/").rsplit("/", 1)[-1], *(str(a) for a in argv[1:])]
    text = " ".join(words)
    return text if len(text) <= COMMAND_WIDTH else text[:COMMAND_WIDTH - 1] + "…"


def _notes(label: str, stage: StageFile) -> list[str]:
    """The warnings a stage recorded (train, the sweep, the report), one line each."""
    return [f"{label} (warnings): {item}" for item in redact(stage.warnings or [])]


def _result_notes(inputs: ReportInputs) -> list[str]:
    """What the evaluate and audit results say they skipped or estimated (skipped metrics, one-class groups)."""
    from pipeline.report.verdict import lung_mask_status

    lines: list[str] = []
    if inputs.audit is not None:
        lines += [f"audit skipped {item.metric}: {item.reason}" for item in inputs.audit.skipped]
    status, phrase = lung_mask_status(inputs.audit.lung_masks.model_dump() if inputs.audit is not None else None)
    if status == "estimated":
        lines.append(f"audit: {phrase}; the ESTIMATED masks are fixed ellipses: lung numbers resting on them are "
                     "estimates.")
    elif status == "absent":
        lines.append(f"audit: {phrase}; every lung number is not measured.")
    seen: set[str] = set()
    for entry in inputs.metrics.models.values() if inputs.metrics is not None else ():
        for scope, block in [("overall", entry.overall), *entry.per_site.items()]:
            for note in block.notes:
                text = f"evaluate ({scope}): {note}"
                if text not in seen:
                    seen.add(text)
                    lines.append(text)
    return lines


PIPELINE_ORDER = ("synth", "ingest", "train", "evaluate", "audit")


def _order(label: str) -> tuple[int, str]:
    head = label.split(":")[0]
    return (PIPELINE_ORDER.index(head) if head in PIPELINE_ORDER else len(PIPELINE_ORDER), label)


def build_provenance(inputs: ReportInputs) -> dict[str, Any]:
    stages = Table(["stage", "started (UTC)", "seconds", "seed", "git commit", "command"],
                   caption="Stages behind this report", numeric=[False, False, True, True, False, False])
    notes: list[str] = []
    configs = []
    versions: dict[str, str] = {}
    commits = set()
    for label, stage in sorted(inputs.stages.items(), key=lambda kv: _order(kv[0])):
        commit = stage.git_commit
        commits.add(commit)
        command = " ".join(stage.command)
        shown = command_text(stage.command)
        stages.add([label, cell(stage.started), num_cell(stage.seconds, digits=1), cell(stage.seed),
                    cell(commit[:12] + ("-dirty" if str(commit).endswith("-dirty") else "") if commit else None),
                    Cell(shown, command, "muted small", command)])
        notes.extend(_notes(label, stage))
        config = redact(stage.config)
        if config:
            configs.append({"label": label, "text": json.dumps(config, indent=2, sort_keys=True, default=str)})
        for name, version in stage.versions.items():
            versions.setdefault(str(name), str(version))
    if len({c for c in commits if c}) > 1:
        notes.append("The stages were produced by different git commits (see the table): compare with care.")
    if stages.empty:
        notes.append("No stage.json was found: the provenance of these results is unknown.")
    notes.extend(_result_notes(inputs))
    return {"stages": stages, "versions": sorted(versions.items()), "configs": configs, "notes": notes}
