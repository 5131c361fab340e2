"""The `cxr-fishr` command line: one thin command per stage (each in ``pipeline/commands/<stage>.py``).

Heavy libraries (torch, timm, monai, captum, backpack) are imported inside the commands so `--help` is instant.
A ``CxrFishrError`` becomes its message on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may wait on (or download from) a model hub

import click  # noqa: E402
import typer  # noqa: E402

from pipeline import __version__  # noqa: E402
from pipeline.commands import register_all  # noqa: E402
from pipeline.errors import CxrFishrError  # noqa: E402

app = typer.Typer(
    name="cxr-fishr",
    help=(
        "Does a chest X-ray classifier look at the lungs or at shortcuts?\n\n"
        "Stages: synth -> ingest -> train -> evaluate -> audit -> report. `demo` runs them all on the embedded "
        "synthetic multi-site cohort; `bench` prints performance figures as JSON."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cxr-fishr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """cxr-fishr command line."""


register_all(app)


def main(argv: list[str] | None = None) -> int:
    try:
        result = app(args=argv, standalone_mode=False, prog_name="cxr-fishr")
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        typer.echo("Aborted.", err=True)
        return 130
    except click.exceptions.ClickException as exc:
        exc.show()
        return exc.exit_code
    except CxrFishrError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
