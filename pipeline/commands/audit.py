"""`cxr-fishr audit RUN [RUN ...] --ingest INGEST --out AUDIT`: attribution, interventions, probes, sanity."""

from __future__ import annotations

from pathlib import Path

import typer


def audit_command(
    model_dirs: list[Path] = typer.Argument(..., help="Run directories (each with model.pt) or model .pt files."),
    ingest: Path = typer.Option(..., "--ingest", help="Ingest directory (manifest.parquet + cache/)."),
    out: Path = typer.Option(..., "--out", help="Output directory for audit.json, overlays/, stage.json."),
    config: Path | None = typer.Option(None, "--config",
                                          help="Audit config (YAML); default configs/audit/default.yaml if present."),
    name: list[str] | None = typer.Option(None, "--name", help="Model name; repeat once per run, in order: --name A "
                                           "--name B (default: dir names)."),
    max_images: int | None = typer.Option(None, "--max-images", help="Attribution images per model."),
    methods: str | None = typer.Option(None, "--methods", help="Comma-separated attribution methods."),
    selected: bool = typer.Option(False, "--selected/--no-selected",
                                  help="Also audit RUN/selected/<rule>.pt checkpoints other than model.pt's."),
) -> None:
    """Does each model look at the lungs? Captum attributions scored against lung and shortcut masks,
    lung-only / lungs-removed accuracy, counterfactual flips, region ablation, linear probes, randomisation check."""
    from pipeline.audit import run
    from pipeline.audit.config import AuditConfig
    from pipeline.commands.flags import check_config_flags
    from pipeline.config import load_config, validate_config

    overrides = {"max_images": max_images,
                 "methods": [m.strip() for m in methods.split(",") if m.strip()] if methods is not None else None}
    check_config_flags("audit", AuditConfig, {"max_images": ("--max-images", max_images),
                                              "methods": ("--methods", overrides["methods"])})
    default = Path("configs/audit/default.yaml")
    if config is None and not default.is_file():
        cfg = validate_config(AuditConfig, {k: v for k, v in overrides.items() if v is not None}, "<defaults>")
    else:
        cfg = load_config(AuditConfig, config or default, overrides)  # a missing explicit file is a ConfigError
    result = run(model_dirs=model_dirs, ingest_dir=ingest, out=out, config=cfg, names=name or None,
                 include_selected=selected)
    from pipeline.commands.evaluate import _num

    audit = result.audit
    unlabelled = audit["n_split"]["unlabelled"]
    labels = ("all labelled" if not unlabelled else
              f"{unlabelled} unlabelled: only label-free checks use those" if audit["n_split"]["labelled"] else
              f"all {unlabelled} unlabelled: label-free checks only")
    typer.echo(f"audit: wrote {result.audit_path} ({audit['n_split']['total']} {audit['split']} images, {labels}; "
               f"lung masks {audit['lung_masks']})")
    for model_name, entry in audit["models"].items():
        inter = entry["interventions"]["overall"]
        why = _reasons(inter, audit.get("skipped"))  # the reason the audit recorded for each null number
        typer.echo(f"  {model_name}: accuracy {_num(inter['accuracy'], why.get('accuracy'))} (majority "
                   f"{_num(inter['majority_accuracy'], why.get('majority_accuracy'))}, "
                   f"threshold {_num(entry['threshold']['value'])} from {entry['threshold']['source']}), "
                   f"lung-only {_num(inter['lung_only_accuracy'], why.get('lung_only_accuracy'))}, lungs-removed "
                   f"{_num(inter['lungs_removed_accuracy'], why.get('lungs_removed_accuracy'))}, counterfactual flips "
                   f"{_num(inter['counterfactual_flip_rate'], why.get('counterfactual_flip_rate'))}")
    for warning in audit.get("warnings", []):
        typer.echo(f"  warning: {warning}")


def _reasons(block: dict, skipped: list | None) -> dict[str, str]:
    """metric -> reason: the block's ``not_measured``, else audit.json's ``skipped`` entry for that metric."""
    reasons = {str(s.get("metric")): str(s.get("reason")) for s in skipped or [] if isinstance(s, dict)}
    return {**reasons, **{k: str(v) for k, v in (block.get("not_measured") or {}).items() if v}}
