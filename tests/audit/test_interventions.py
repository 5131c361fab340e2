import numpy as np
import pytest
import torch

from pipeline.audit.data import AuditData
from pipeline.audit.interventions import (
    fill_values,
    intervention_predictions,
    intervention_summary,
    lung_only,
    lungs_removed,
    region_ablation_drops,
    region_ablation_share,
    region_mask,
    region_names,
)


def _behaviour(network, ingest_dir):
    data = AuditData.open(ingest_dir, "test")
    rows = np.arange(len(data.frame))
    x, y = data.images(rows), data.labels(rows)
    lungs = torch.from_numpy(data.lungs(rows)).unsqueeze(1)
    x_cf, has_cf = data.counterfactuals(rows)
    preds = intervention_predictions(network, x, lungs, x_cf)
    return intervention_summary(preds, y, has_cf), data, rows, x


def test_lung_reader_interventions_keep_lung_only_and_fall_to_chance_without_lungs(lung_reader, ingest_dir):
    summary, *_ = _behaviour(lung_reader, ingest_dir)
    assert summary["accuracy"] == pytest.approx(1.0)
    assert summary["lung_only_accuracy"] == pytest.approx(1.0)
    assert summary["lungs_removed_accuracy"] == pytest.approx(0.5)  # balanced labels: chance
    assert summary["counterfactual_flip_rate"] == pytest.approx(0.0)


def test_shortcut_reader_interventions_fall_to_chance_lung_only_and_keep_without_lungs(shortcut_reader, ingest_dir):
    summary, *_ = _behaviour(shortcut_reader, ingest_dir)
    assert summary["accuracy"] == pytest.approx(0.75)  # the test site's position-label agreement
    assert summary["lung_only_accuracy"] == pytest.approx(0.5)
    assert summary["lungs_removed_accuracy"] == pytest.approx(0.75)
    assert summary["counterfactual_flip_rate"] == pytest.approx(1.0)
    assert summary["n_counterfactual"] == 16


@pytest.mark.parametrize("reader, region", [("lung_reader", "lungs"), ("shortcut_reader", "text_stamp")])
def test_region_ablation_abs_share_lands_on_the_region_read(reader, region, request, ingest_dir):
    network = request.getfixturevalue(reader)
    _, data, rows, x = _behaviour(network, ingest_dir)
    target = network(x).argmax(1)
    drops = region_ablation_drops(network, x, region_mask(data.lungs(rows), data.shortcuts(rows)), target)
    shares = region_ablation_share(drops, absolute=True)
    supine = data.frame["position"].to_numpy()[rows] == "supine"
    if region == "text_stamp":  # the stamp region exists only on supine images
        shares = region_ablation_share(drops, supine, absolute=True)
    assert shares[region] > 0.9
    assert shares[region] == max(shares[k] for k in region_names().values())


def test_fill_values_without_lung_mask_uses_image_mean():
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    none = torch.zeros_like(x, dtype=torch.bool)
    assert fill_values(x, none).item() == pytest.approx(x.mean().item())
    lungs = none.clone()
    lungs[..., :2, :] = True
    assert fill_values(x, lungs).item() == pytest.approx(x[..., 2:, :].mean().item())
    assert torch.equal(lung_only(x, lungs)[..., :2, :], x[..., :2, :])
    assert torch.all(lungs_removed(x, lungs)[..., :2, :] == fill_values(x, lungs).item())


def test_intervention_summary_without_counterfactuals_returns_none():
    preds = {"original": np.array([1, 0]), "lung_only": np.array([1, 1]), "lungs_removed": np.array([0, 0])}
    out = intervention_summary(preds, np.array([1, 0]))
    assert out["counterfactual_flip_rate"] is None and out["n_counterfactual"] == 0
    assert out["lung_only_accuracy"] == 0.5 and out["lungs_removed_accuracy"] == 0.5
