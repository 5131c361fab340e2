"""The whole pipeline on a cohort shaped like the public COVID-era collections a new user starts with: two PNG/JPEG +
CSV collections in one ingest (``sources:``), no masks, CSV rows whose image was never downloaded, blank labels,
DICOM-UID-like file names, a test site named with the wrong case and 92% COVID. Every dropped, unmatched or
unlabelled row must be counted where a user sees it, and the report must not claim what it did not measure."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import audit, evaluate, ingest, report, train

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SIZE = 48


def _radiograph(rng: np.random.Generator, *, covid: bool, ap: bool) -> np.ndarray:
    """A crude chest film: bright body, two dark lung fields, opacities inside them when ``covid``, and an AP
    'portable' stamp in a corner (the collection's shortcut)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    image = 0.75 - 0.2 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    for cx in (0.32, 0.68):
        lung = ((xx - cx) / 0.14) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1
        image[lung] = 0.25
        if covid:
            blob = ((xx - cx) / 0.08) ** 2 + ((yy - 0.62) / 0.1) ** 2 < 1
            image[blob] = 0.55
    if ap:
        image[2:8, 2:14] = 1.0
    image = image + rng.normal(0, 0.03, image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _write_cohort(root: Path) -> dict:
    rng = np.random.default_rng(0)
    # collection 1: PNGs named like DICOM UIDs, two hospitals, AP mostly COVID (the shortcut), a CSV with 25 rows
    # whose image is missing and 4 blank labels
    cohen = root / "cohen"
    (cohen / "images").mkdir(parents=True)
    rows = []
    n_blank = 0
    for hospital in ("h1", "h2"):
        for k in range(24):
            covid = k % 2 == 0
            ap = covid if rng.random() < 0.85 else not covid
            name = f"CR.1.2.840.{hospital[-1]}{k:03d}"
            Image.fromarray(_radiograph(rng, covid=covid, ap=ap)).save(cohen / "images" / f"{name}.png")
            label = "COVID-19" if covid else "No Finding"
            if k in (5, 11):
                label, n_blank = "", n_blank + 1
            rows.append({"filename": name, "finding": label, "view": "AP" if ap else "PA", "hospital": hospital,
                         "patientid": f"P{hospital}{k}"})
    for k in range(25):  # listed, never downloaded
        rows.append({"filename": f"CR.1.2.840.9{k:03d}", "finding": "COVID-19", "view": "AP", "hospital": "h1",
                     "patientid": f"Pmissing{k}"})
    _write_csv(cohen / "metadata.csv", rows)

    # collection 2: JPEGs from one hospital, 92% COVID, the intended test site
    fig = root / "figure1"
    fig.mkdir()
    rows = []
    for k in range(25):
        covid = k >= 2
        ap = rng.random() < 0.5
        Image.fromarray(_radiograph(rng, covid=covid, ap=ap)).convert("RGB").save(fig / f"fig{k:02d}.jpg", quality=95)
        rows.append({"file": f"fig{k:02d}.jpg", "label": "1" if covid else "0", "view": "AP" if ap else "PA"})
    _write_csv(fig / "labels.csv", rows)

    config = {
        "name": "two_collections",
        "sources": [
            {"name": "cohen", "path": str(cohen / "images"), "metadata": str(cohen / "metadata.csv"),
             "metadata_mapping": {"file_column": "filename", "match": "stem", "label_column": "finding",
                                  "positive_values": ["COVID-19"], "negative_values": ["No Finding"],
                                  "site_column": "hospital", "view_columns": ["view"],
                                  "patient_column": "patientid"}},
            {"name": "figure1", "path": str(fig), "metadata": str(fig / "labels.csv"),
             "metadata_mapping": {"file_column": "file", "match": "basename", "label_column": "label",
                                  "positive_values": ["1"], "negative_values": ["0"], "view_columns": ["view"]},
             "site_constant": "figure1"},
        ],
        "splits": {"test_sites": ["Figure1"], "holdout": 0.25},
        "cache": {"size": 32},
    }
    path = root / "ingest.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return {"config": path, "n_blank": n_blank, "n_missing": 25, "n_images": 48 + 25}


def _write_csv(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)


def _strict_json(path: Path) -> dict:
    def refuse(token):
        raise AssertionError(f"{path.name} holds the non-JSON token {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    cohort = _write_cohort(tmp / "data")
    ingested = ingest.run(source=None, out=tmp / "ingest", config=cohort["config"], workers=1, progress=False)
    overrides = {"steps": 6, "eval_every": 3, "checkpoint_every": 3, "device": "cpu",
                 "hparams": {"batch_size": 4}}
    models = []
    for algorithm in ("erm", "fishr"):
        cfg = yaml.safe_load((REPO / f"configs/train/{algorithm}.yaml").read_text(encoding="utf-8"))
        cfg.update({k: v for k, v in overrides.items() if k != "hparams"})
        cfg["hparams"] = {**cfg.get("hparams", {}), **overrides["hparams"]}
        if algorithm == "fishr":
            cfg["hparams"]["penalty_anneal_iters"] = 0
        models.append(train.run(ingest_dir=tmp / "ingest", config=cfg, out=tmp / "models" / algorithm,
                                progress=False).out)
    evaluated = evaluate.run(model_dirs=models, ingest_dir=tmp / "ingest", out=tmp / "evaluate", n_bootstrap=20,
                             last_k=2)
    from pipeline.audit.config import AuditConfig

    audit_cfg = AuditConfig.model_validate({
        "methods": ["integrated_gradients", "saliency"], "max_images": 6, "ig_steps": 4, "internal_batch_size": 16,
        "probe_max_images": 60, "probe_folds": 2, "sanity_images": 2, "batch_size": 8})
    audit.run(model_dirs=models, ingest_dir=tmp / "ingest", out=tmp / "audit", config=audit_cfg)
    rendered = report.run(evaluate_dir=tmp / "evaluate", audit_dir=tmp / "audit", ingest_dir=tmp / "ingest",
                          out=tmp / "report")
    return {"tmp": tmp, "cohort": cohort, "ingest": ingested, "evaluate": evaluated, "report": rendered}


def test_ingest_counts_every_row_it_did_not_keep(pipeline_run):
    cohort, summary = pipeline_run["cohort"], pipeline_run["ingest"].summary
    assert summary.n_images == 48 + 25  # nothing on disk was lost
    assert summary.metadata_rows_without_image.n == cohort["n_missing"]
    assert summary.metadata_rows_without_image.examples
    assert summary.n_unlabelled == cohort["n_blank"]
    assert "view" in summary.shortcut_attributes
    # 'Figure1' in the config resolved to the data's 'figure1', so the test site was held out, not trained on
    import pandas as pd

    manifest = pd.read_parquet(pipeline_run["tmp"] / "ingest" / "manifest.parquet")
    assert set(manifest.loc[manifest["site"] == "figure1", "split"]) == {"test"}
    # DICOM-UID-like names kept their own CSV rows (a stem cut at the first dot merged them into one)
    cohen = manifest[manifest["path"].str.startswith("cohen/")]
    assert cohen["patient_key"].nunique() == 48
    assert manifest["label"].isna().sum() == cohort["n_blank"]


def test_train_skips_the_unlabelled_rows_and_says_so(pipeline_run):
    stage = json.loads((pipeline_run["tmp"] / "models" / "erm" / "stage.json").read_text(encoding="utf-8"))
    text = json.dumps(stage)
    assert "unlabelled" in text


def test_stage_outputs_are_strict_json(pipeline_run):
    tmp = pipeline_run["tmp"]
    for path in (tmp / "ingest/summary.json", tmp / "evaluate/metrics.json", tmp / "audit/audit.json"):
        _strict_json(path)


def test_report_says_only_what_it_measured(pipeline_run):
    html = pipeline_run["report"].index.read_text(encoding="utf-8")
    page = _Text()
    page.feed(html)
    text = " ".join(" ".join(page.parts).split())
    # no lung mask, no counterfactual: lung reliance cannot be claimed
    assert "mostly uses lung evidence" not in text
    assert "not measured" in text
    assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE)
    # the rows a user lost are on the page
    assert str(pipeline_run["cohort"]["n_missing"]) in text
    assert re.search(r"without an image", text)
    # at a 92%-COVID site the baseline is the majority rate, not 50%
    metrics = _strict_json(pipeline_run["tmp"] / "evaluate/metrics.json")
    for model in metrics["models"].values():
        assert model["per_site"]["figure1"]["majority_accuracy"] == pytest.approx(23 / 25)
    assert "majority" in text
    # a caption written for the synthetic cohort must not appear on data where nobody computed it
    assert "reverses the training hospitals" not in text
