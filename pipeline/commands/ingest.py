"""`cxr-fishr ingest SOURCE --out DIR`: DICOM / PNG+CSV folder -> manifest, image cache, rejects, summary."""

from __future__ import annotations

from pathlib import Path

import typer


def ingest_command(
    source: Path | None = typer.Argument(
        None, help="Folder (searched recursively) of DICOM files, or PNG/JPEG images; omitted when the config lists "
        "`sources:`."),
    out: Path = typer.Option(..., "--out", help="Output folder (replaced atomically; SOURCE is never modified)."),
    metadata: Path | None = typer.Option(None, "--metadata", help="Metadata CSV (labels, ...), read via the config's metadata_mapping."),
    config: Path | None = typer.Option(None, "--config", help="Ingest config YAML (configs/ingest/*.yaml); default: generic DICOM folder."),
    size: int | None = typer.Option(None, "--size", help="Cache resolution in pixels (overrides cache.size)."),
    workers: int | None = typer.Option(None, "--workers", help="Decoding processes (default: all cores, at most 8)."),
) -> None:
    """Decode, harmonise, split and cache a chest X-ray source; rejected files are listed in OUT/rejects.csv."""
    from pipeline.commands.flags import check_flag

    if workers is not None:
        check_flag("ingest", "--workers", workers, ok=workers >= 1, must="be >= 1",
                   fix="Leave it out to use every core (at most 8).")
    from pipeline.ingest import run

    run(source=source, out=out, metadata=metadata, config=config, size=size, workers=workers)
