"""Unlabelled images (manifest label pd.NA) are left out of training and selection, counted per split; a training
domain without labelled images, or with fewer than the algorithm's per-domain minimum, is a DataError; degenerate
hparams stop the CLI with exit 2 before any data is read."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.manifest import SPLITS, read_manifest
from pipeline.train import load_train_config, run
from pipeline.train.distributed import DistInfo
from pipeline.train.domains import build_train_data
from tests.helpers.tiny_cohort import TRAIN_SITES, build_ingest

UNLABELLED = {"north": 0.25, "east": 0.5, "valley": 0.5, "harbour": 0.25}


@pytest.fixture(scope="module")
def partly_labelled(tmp_path_factory):
    return build_ingest(tmp_path_factory.mktemp("partly"), sites=TRAIN_SITES, n_per_site=16, size=32, seed=3,
                        unlabelled=UNLABELLED)


def test_build_train_data_serves_labelled_rows_only_and_counts_the_rest(partly_labelled, tiny_config):
    frame = read_manifest(partly_labelled)
    cfg = load_train_config(tiny_config())
    data = build_train_data(partly_labelled, cfg, batch_size=4, dist=DistInfo())
    expected = {split: int(frame.loc[frame["split"] == split, "label"].isna().sum()) for split in SPLITS}
    assert data.unlabelled_skipped == expected and expected["train"] > 0 and expected["ood_val"] == 8
    for domain, loader in data.loaders.loaders.items():
        rows = frame[(frame["domain"] == domain) & (frame["split"] == "train")]
        assert len(loader.dataset) == int(rows["label"].notna().sum())
    assert len(data.ood_val.labels) == 8 and set(data.ood_val.labels.tolist()) == {0, 1}
    assert sum(len(s.labels) for s in data.val_sets) == int(
        frame.loc[frame["split"] == "val", "label"].notna().sum())


def test_train_reports_skipped_unlabelled_per_split(partly_labelled, tmp_path, tiny_config, capsys):
    frame = read_manifest(partly_labelled)
    result = run(ingest_dir=partly_labelled, config=tiny_config(steps=2, eval_every=2, checkpoint_every=2),
                 out=tmp_path / "run", progress=False)
    expected = {split: int(frame.loc[frame["split"] == split, "label"].isna().sum()) for split in SPLITS}
    stage = json.loads((result.out / "stage.json").read_text())
    assert stage["unlabelled_skipped"] == expected
    meta = torch.load(result.model_path, weights_only=False)["meta"]
    assert meta["unlabelled_skipped"] == expected
    assert f"train: skipped {sum(expected.values())} unlabelled images (train {expected['train']}" in \
        capsys.readouterr().err


def test_training_domain_without_labelled_images_is_a_data_error(tmp_path, tiny_config):
    ingest = build_ingest(tmp_path / "ing", sites=TRAIN_SITES, n_per_site=12, size=32, unlabelled={"east": 1.0})
    frame = read_manifest(ingest)
    east = frame[frame["site"] == "east"]
    n_train, n_val = int((east["split"] == "train").sum()), int((east["split"] == "val").sum())
    with pytest.raises(DataError) as caught:
        run(ingest_dir=ingest, config=tiny_config(), out=tmp_path / "run", progress=False)
    message = str(caught.value)
    assert "training domain 'east' must have labelled images in split 'train', got none" in message
    assert f"train: 0 of {n_train} labelled, val: 0 of {n_val} labelled" in message
    assert "labels" in message.split(". ", 1)[1]  # the fix


def test_domain_below_the_algorithms_minimum_batch_is_refused_and_erm_warns(tmp_path, tiny_config, capsys):
    # one labelled train image in 'east' (val_fraction 0: every training-site image is in split train)
    ingest = build_ingest(tmp_path / "ing", n_per_site=12, size=32, val_fraction=0.0,
                          sites={name: TRAIN_SITES[name] for name in ("north", "east", "harbour")},
                          unlabelled={"east": 11 / 12})
    with pytest.raises(DataError, match=r"training domain 'east' must have >= 2 labelled images in split 'train' "
                                        r"for coral \(the per-domain feature covariance .*\), got 1"):
        run(ingest_dir=ingest, config=tiny_config(algorithm="coral", hparams={"batch_size": 4}),
            out=tmp_path / "coral", progress=False, )
    result = run(ingest_dir=ingest, config=tiny_config(steps=1, eval_every=1, selection="oracle"),
                 out=tmp_path / "erm", progress=False)
    stage = json.loads((result.out / "stage.json").read_text())
    assert stage["n_warnings"] == 1 and "'east' has 1 labelled train images, fewer than batch_size 8" in \
        stage["warnings"][0]
    assert "warning: train: training domain 'east' has 1" in capsys.readouterr().err


@pytest.mark.parametrize(("algorithm", "hparams", "expected"), [
    ("coral", {"batch_size": 1}, "coral: hparam batch_size must be >= 2 (the per-domain feature covariance"),
    ("fishr", {"batch_size": 1}, "fishr: hparam batch_size must be >= 2 (the per-domain gradient variance is "
                                 "undefined for 1 sample), got 1"),
    ("fishr", {"ema": 1.0}, "fishr: hparam ema must be in [0, 1)"),
    ("vrex", {"vrex_lambda": 0}, "vrex: hparam vrex_lambda must be > 0"),
])
def test_cli_refuses_degenerate_hparams_with_exit_2(toy_ingest_dir, tmp_path, tiny_config, capsys, algorithm,
                                                     hparams, expected):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(tiny_config(algorithm=algorithm, hparams=hparams)))
    code = main(["train", str(toy_ingest_dir), "--config", str(config), "--out", str(tmp_path / "run")])
    assert code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_fishr_run_whose_penalty_never_switches_on_counts_a_warning(toy_ingest_dir, tmp_path, tiny_config, capsys):
    cfg = tiny_config(algorithm="fishr", hparams={"batch_size": 4, "penalty_anneal_iters": 2}, steps=2,
                      eval_every=2, checkpoint_every=2)
    result = run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "run", progress=False)
    stage = json.loads((result.out / "stage.json").read_text())
    assert stage["n_warnings"] == 1 and "penalty_anneal_iters 2 >= steps 2" in stage["warnings"][0]
    assert "warning: fishr: hparam penalty_anneal_iters 2 >= steps 2" in capsys.readouterr().err
    history = [json.loads(line) for line in result.history_path.read_text().splitlines()]
    assert all(line["loss"] == line["nll"] for line in history if "nll" in line)  # plain ERM indeed
