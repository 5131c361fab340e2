"""Train config domain_columns resolve case-insensitively against the manifest's columns (said on the console);
a name matching no column is exit 2 listing the columns."""

from __future__ import annotations

import pytest
import torch
import yaml

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.train import run
from tests.helpers.tiny_cohort import TRAIN_SITES, build_ingest

CONFIG = {"algorithm": "erm", "hparams": {"lr": 1e-3, "batch_size": 4},
          "model": {"backbone": "resnet10t", "norm_layer": "group"}, "steps": 2, "eval_every": 2,
          "checkpoint_every": 2, "eval_batch_size": 64, "device": "cpu", "seed": 0}


@pytest.fixture(scope="module")
def ingest(tmp_path_factory):
    return build_ingest(tmp_path_factory.mktemp("case") / "ing", sites=TRAIN_SITES, n_per_site=12, size=32, seed=0)


def test_upper_case_domain_columns_resolve_and_are_said(ingest, tmp_path, capsys):
    result = run(ingest_dir=ingest, config={**CONFIG, "domain_columns": ["SITE", "View"]}, out=tmp_path / "run",
                 progress=False)
    assert "'SITE' resolved to the manifest column 'site'" in capsys.readouterr().err
    meta = torch.load(result.out / "model.pt", weights_only=False)["meta"]
    assert meta["domain_columns"] == ["site", "view"]
    assert all(d.count("|") == 1 for d in meta["training_domains"])


def test_unknown_domain_column_exits_2_listing_the_columns(ingest, tmp_path, capsys):
    with pytest.raises(ConfigError, match="domain_columns"):
        run(ingest_dir=ingest, config={**CONFIG, "domain_columns": ["hospital"]}, out=tmp_path / "r", progress=False)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "domain_columns": ["hospital"]}))
    code = main(["train", str(ingest), "--config", str(config), "--out", str(tmp_path / "cli")])
    err = capsys.readouterr().err
    assert code == 2 and "'hospital'" in err and "'site'" in err and "'view'" in err
