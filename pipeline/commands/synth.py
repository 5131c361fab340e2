"""`cxr-fishr synth`: render the synthetic multi-site cohort (a thin wrapper over pipeline.synth.run)."""

from __future__ import annotations

from pathlib import Path

import typer


def synth_command(
    config: Path = typer.Option(Path("configs/cohort/demo.yaml"), "--config", help="Cohort config (YAML)."),
    out: Path = typer.Option(..., "--out", help="Output directory (created; existing identical images are kept)."),
    n_per_site: int = typer.Option(None, "--n-per-site", help="Images per site (overrides every site's n)."),
    size: int = typer.Option(None, "--size", help="Image size in pixels (square)."),
    seed: int = typer.Option(None, "--seed", help="Cohort seed: same seed, same bytes."),
    counterfactual: str = typer.Option(
        None, "--counterfactual", help="'position': also render every patient in the other position."
    ),
    workers: int = typer.Option(None, "--workers", help="Processes (default: every core)."),
) -> None:
    """Render the synthetic cohort: DICOM files + masks per site, labels.csv, truth.csv, cohort.yaml."""
    from pipeline.commands.flags import check_config_flags, check_flag
    from pipeline.synth.config import CohortConfig, SiteConfig

    check_config_flags("synth", SiteConfig, {"n": ("--n-per-site", n_per_site)}, prefix="sites[*].")
    check_config_flags("synth", CohortConfig, {"size": ("--size", size), "seed": ("--seed", seed),
                                               "counterfactual": ("--counterfactual", counterfactual)})
    if workers is not None:
        check_flag("synth", "--workers", workers, ok=workers >= 1, must="be >= 1", fix="Leave it out to use every core.")
    from pipeline.synth import run

    result = run(config=config, out=out, n_per_site=n_per_site, size=size, seed=seed, counterfactual=counterfactual,
                 workers=workers)
    if result.reused:
        typer.echo(f"synth: {result.n_images} images in {result.out} (inputs unchanged: reused, none rendered)")
        return
    typer.echo(
        f"synth: {result.n_images} images in {result.out} ({result.n_rendered} rendered, "
        f"{result.seconds:.1f} s, {result.images_per_second:.1f} images/s)"
    )
