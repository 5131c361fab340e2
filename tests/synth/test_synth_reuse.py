"""synth follows the stage runner's reuse rule: same resolved config, same fingerprint, nothing rewritten."""

from pathlib import Path

from pipeline.stage import read_stage
from pipeline.synth import run, stage

DEMO = Path(__file__).resolve().parents[2] / "configs" / "cohort" / "demo.yaml"


def test_second_identical_run_reuses_the_cohort_and_a_changed_option_renders_again(tmp_path):
    out = tmp_path / "cohort"
    first = run(config=DEMO, out=out, n_per_site=2, size=32, workers=1, progress=False)
    record = (out / "stage.json").read_bytes()
    assert not first.reused and first.n_rendered == 10
    assert read_stage(out)["fingerprint"] == stage(config=DEMO, out=out, n_per_site=2, size=32).fingerprint()

    again = run(config=DEMO, out=out, n_per_site=2, size=32, workers=2, progress=False)  # workers: speed only
    assert again.reused and again.n_rendered == 0 and again.n_images == 10
    assert (out / "stage.json").read_bytes() == record

    other = run(config=DEMO, out=out, n_per_site=2, size=32, seed=5, workers=1, progress=False)
    assert not other.reused and other.n_rendered == 10
    assert read_stage(out)["fingerprint"] != stage(config=DEMO, out=out, n_per_site=2, size=32).fingerprint()


def test_interrupted_cohort_is_not_reused(tmp_path):
    out = tmp_path / "cohort"
    run(config=DEMO, out=out, n_per_site=1, size=32, workers=1, progress=False)
    (out / "stage.json").unlink()  # as if killed before the record was written
    again = run(config=DEMO, out=out, n_per_site=1, size=32, workers=1, progress=False)
    assert not again.reused and (out / "stage.json").is_file()
