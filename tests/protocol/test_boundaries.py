"""Stage packages meet only through neutral modules (pipeline/protocol, pipeline/data, pipeline/runs, ...): an AST
check of every import under pipeline/, lazy ones inside functions included."""

import ast
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
STAGES = ("ingest", "train", "evaluate", "audit", "report", "results", "synth")

# (importing file, imported stage module) pairs allowed to cross: none. A shared piece goes to a neutral module.
ALLOWED: set[tuple[str, str]] = set()


def imported_modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports (``from pipeline import evaluate`` counts as ``pipeline.evaluate``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if node.module == "pipeline":
                found.update(f"pipeline.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the project imports absolute pipeline.* paths")
    return found


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pipeline" and parts[1] in STAGES else None


def test_the_checker_sees_lazy_and_package_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from pipeline.evaluate.scoring import x\nfrom pipeline import report\n")
    assert imported_modules(source) == {"pipeline.evaluate.scoring", "pipeline", "pipeline.report"}
    assert stage_of("pipeline.evaluate.scoring") == "evaluate" and stage_of("pipeline.protocol.metrics") is None


@pytest.mark.parametrize("path", sorted((PIPELINE / "protocol").rglob("*.py")), ids=lambda p: p.name)
def test_protocol_imports_no_stage_package(path):
    stages = sorted(m for m in imported_modules(path) if stage_of(m))
    assert not stages, f"pipeline/protocol/{path.name} imports stage modules {stages}: protocol must stay neutral"


def test_stages_import_each_other_only_through_neutral_modules():
    crossing = set()
    for path in sorted(PIPELINE.rglob("*.py")):
        relative = path.relative_to(PIPELINE)
        own = relative.parts[0] if len(relative.parts) > 1 else None
        if own not in STAGES:
            continue  # neutral modules and the CLI/demo orchestration may import any stage
        for module in imported_modules(path):
            if stage_of(module) not in (None, own):
                crossing.add((relative.as_posix(), module))
    new = sorted(crossing - ALLOWED)
    assert not new, (f"stage packages import another stage's modules: {new}; move the shared piece to a neutral "
                     "module (pipeline/protocol, pipeline/data, pipeline/runs.py, ...) and import it from there")


# audit.json records the audit config it ran with, typed by the audit stage's own config model
ARTEFACT_ALLOWED = {("audit.py", "pipeline.audit.config")}


@pytest.mark.parametrize("path", sorted((PIPELINE / "artefacts").rglob("*.py")), ids=lambda p: p.name)
def test_artefacts_import_no_stage_package(path):
    stages = sorted((path.name, m) for m in imported_modules(path) if stage_of(m))
    assert set(stages) <= ARTEFACT_ALLOWED, (f"pipeline/artefacts/{path.name} imports stage modules {stages}: the "
                                             "artefact models must stay neutral (every stage reads them)")
