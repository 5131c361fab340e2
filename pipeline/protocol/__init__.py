"""The project's protocol definitions, in one place (docs/design/architecture.md): the label's meaning and names
(:mod:`.labels`), the model-selection rules (:mod:`.selection`), the metrics and their "worst" (:mod:`.metrics`),
shortcut-conflicting and aligned images (:mod:`.shortcuts`) and the report verdict's thresholds (:mod:`.thresholds`).

Neutral: it imports no stage package (ingest, train, evaluate, audit, report, results, synth); every stage imports
its definitions from here (tests/protocol/test_boundaries.py checks both).
"""
