import csv
import json

from pipeline.models import load_model
from pipeline.protocol.across_runs import select_across_runs
from pipeline.stage import STAGE_FILE, read_stage
from pipeline.train import load_train_config
from pipeline.train.sweep import draw_hparams, plan_jobs, run_sweep


def test_plan_jobs_draw_zero_keeps_config_hparams_and_fixed_batch_size(tiny_config):
    cfg = load_train_config(tiny_config(algorithm="fishr", hparams={"lambda": 10.0, "batch_size": 8}))
    jobs = plan_jobs(cfg, n_hparams=3, seeds=2, holdout_domains=["east"])
    assert len(jobs) == 3 * 2 * 2 and len({job.key for job in jobs}) == len(jobs)
    assert jobs[0].config.typed_hparams().to_dict() == cfg.typed_hparams().to_dict()
    drawn = [draw_hparams(cfg, d, ("batch_size",)) for d in (1, 2)]
    assert all(h["batch_size"] == 8 for h in drawn) and drawn[0]["lambda"] != drawn[1]["lambda"]
    assert draw_hparams(cfg, 1, ("batch_size",)) == drawn[0]  # seeded: a relaunch plans the same jobs


def test_select_across_runs_picks_best_mean_over_seeds_and_skips_draws_with_constant_runs():
    def run(draw, seed, score, holdout=None):
        return {"draw": draw, "trial_seed": seed, "holdout": holdout, "dir": f"d{draw}s{seed}{holdout}",
                "hparams": {"lr": draw}, "selection": {"training_domain": {"score": score},
                                                       "leave_one_domain_out": {"score": score}}}
    runs = [run(0, 0, 0.9), run(0, 1, 0.5), run(1, 0, 0.8), run(1, 1, 0.8), run(2, 0, None), run(2, 1, None),
            run(3, 0, 0.95), run(3, 1, None),  # one seed constant throughout: the draw is not eligible
            run(0, 0, 0.1, "east"), run(1, 0, 0.2, "east")]
    chosen = select_across_runs(runs, ["training_domain", "leave_one_domain_out"])
    assert chosen["training_domain"]["draw"] == 1 and chosen["training_domain"]["score"] == 0.8
    assert chosen["training_domain"]["runs"] == ["d1s0None", "d1s1None"]
    assert chosen["leave_one_domain_out"]["draw"] == 1 and chosen["leave_one_domain_out"]["score"] == 0.2


def test_sweep_runs_carry_fingerprints_and_a_relaunch_skips_finished_runs_and_resumes_a_crashed_one(
        toy_ingest_dir, tmp_path, tiny_config):
    cfg = load_train_config(tiny_config(steps=8, eval_every=4, checkpoint_every=4))
    first = run_sweep(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "sweep", n_hparams=2, seeds=1)
    runs = sorted((tmp_path / "sweep" / "runs").iterdir())
    assert first.ran == 2 and first.skipped == 0 and len(runs) == 2
    assert all(read_stage(r)["fingerprint"] and (r / "model.pt").is_file() for r in runs)
    again = run_sweep(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "sweep", n_hparams=2, seeds=1)
    assert again.ran == 0 and again.skipped == 2
    (runs[0] / STAGE_FILE).unlink()  # as if killed before finishing: only that job runs again (from its checkpoint)
    kept = (runs[0] / "checkpoints" / "last.pt").stat().st_mtime_ns
    third = run_sweep(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "sweep", n_hparams=2, seeds=1)
    assert third.ran == 1 and read_stage(runs[0])["fingerprint"]
    # resumed at its last step (8 of 8): no step was trained again, so no checkpoint was rewritten
    assert (runs[0] / "checkpoints" / "last.pt").stat().st_mtime_ns == kept
    selection = json.loads((tmp_path / "sweep" / "selection.json").read_text())
    chosen = selection["training_domain"]
    assert chosen["draw"] in (0, 1)
    _, _, meta = load_model(tmp_path / "sweep" / "model.pt")
    assert meta["hparams"] == chosen["hparams"]
    with open(tmp_path / "sweep" / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2
