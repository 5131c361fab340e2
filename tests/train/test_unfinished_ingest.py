"""An ingest folder without stage.json did not finish (ingest writes it last, pipeline/stage.py): every stage that
opens an ingest (pipeline/manifest.py read_manifest, pipeline/cache.py ImageCache.open) refuses it with exit 2 and
says to re-run ingest. Real tiny ingests (tests/helpers/tiny_cohort.py), no mocks."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline.cache import ImageCache
from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.manifest import read_manifest
from tests.helpers.tiny_cohort import build_ingest, save_run


@pytest.fixture
def unfinished(toy_ingest_dir, tmp_path):
    """A copy of a finished ingest whose stage.json is gone, as a killed ingest leaves it."""
    ingest = shutil.copytree(toy_ingest_dir, tmp_path / "ingest_unfinished")
    (ingest / "stage.json").unlink()
    return ingest


def test_build_ingest_writes_the_stage_record_ingest_writes_last(tmp_path):
    ingest = build_ingest(tmp_path / "ingest", n_per_site=4, size=16)
    assert (ingest / "stage.json").is_file()
    assert len(read_manifest(ingest)) == len(ImageCache.open(ingest)) == 4 * 4


def test_manifest_and_cache_readers_refuse_an_unfinished_ingest(unfinished):
    for reader in (read_manifest, ImageCache.open):
        with pytest.raises(DataError, match="did not finish: no stage.json") as caught:
            reader(unfinished)
        assert str(unfinished) in str(caught.value) and "Re-run `cxr-fishr ingest" in str(caught.value)


def test_a_folder_that_is_no_ingest_still_says_the_manifest_is_missing(tmp_path):
    with pytest.raises(DataError, match="manifest.parquet must exist"):
        read_manifest(tmp_path)


def test_train_evaluate_and_audit_exit_2_on_an_unfinished_ingest(unfinished, tmp_path, tiny_config, capsys):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=2)))
    run = save_run(tmp_path / "run")
    commands = {
        "train": ["train", str(unfinished), "--config", str(config), "--out", str(tmp_path / "t")],
        "evaluate": ["evaluate", str(run), "--ingest", str(unfinished), "--out", str(tmp_path / "e")],
        "audit": ["audit", str(run), "--ingest", str(unfinished), "--out", str(tmp_path / "a"), "--max-images", "2"],
    }
    for stage, argv in commands.items():
        assert main(argv) == 2, stage
        err = capsys.readouterr().err
        assert f"ingest at {unfinished} did not finish: no stage.json" in err, (stage, err)
    assert not (tmp_path / "t" / "model.pt").exists()
