"""The report's interventions table: every accuracy beside the n it was computed on (labelled images), the flip rate
beside its own n (pairs, labelled or not), from a real audit of a split with unlabelled images."""

from pipeline.artefacts.audit import AuditFile
from pipeline.artefacts.metrics import MetricsFile
from pipeline.audit import run
from pipeline.audit.config import AuditConfig
from pipeline.evaluate import run as evaluate
from pipeline.report.shortcut_audit import interventions_table
from tests.helpers.tiny_cohort import build_ingest

CFG = AuditConfig(methods=["saliency"], max_images=8, sanity_images=2, probe_max_images=32, probe_folds=2,
                  batch_size=8, overlays_per_stratum=1)


def test_interventions_table_shows_the_labelled_n_beside_each_accuracy(run_dirs, tmp_path):
    # the test site harbour: 16 images, the first 2 unlabelled
    ingest = build_ingest(tmp_path / "ingest", size=32, n_per_site=16, unlabelled={"harbour": 0.125})
    result = run(model_dirs=run_dirs[:1], ingest_dir=ingest, out=tmp_path / "audit", config=CFG)
    audit = AuditFile.load(result.audit_path.parent)
    block = audit.models["erm"].interventions.overall
    assert (block.n, block.n_labelled, block.n_labelled_lung_masks, block.n_counterfactual) == (16, 14, 14, 16)

    table = interventions_table(audit.models)
    row = {c: cell.text for c, cell in zip(table.columns, table.rows[0], strict=True)}
    assert row["n labelled"] == "14"  # the audit's majority rate (no metrics.json) is on the 14 labelled images
    assert row["n labelled (lung mask)"] == "14"  # lungs only / lungs removed: labelled images with a lung mask
    assert row["pairs"] == "16"  # the flip rate is label-free: every image with a counterfactual

    # with evaluate's scores, its accuracy sits beside evaluate's n: the 14 labelled images it scored
    evaluate(model_dirs=run_dirs[:1], ingest_dir=ingest, out=tmp_path / "eval", n_bootstrap=5,
             include_selected=False)
    metrics = MetricsFile.load(tmp_path / "eval")
    assert metrics.models["erm"].overall.n == 14
    row = {c: cell.text for c, cell in zip(table.columns, interventions_table(audit.models, metrics).rows[0], strict=True)}
    assert row["n labelled"] == "14" and row["pairs"] == "16"
