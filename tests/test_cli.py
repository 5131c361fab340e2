import subprocess
import sys

from pipeline.cli import main
from pipeline.commands import COMMANDS


def test_help_lists_every_built_command():
    # --help stays instant because the CLI imports no heavy library (the next test checks that, without a clock)
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True, check=True)
    for _, _, command_name in COMMANDS:
        assert command_name in out.stdout, command_name


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from pipeline.cli import app; "
        "heavy=[m for m in ('torch','timm','monai','captum','backpack','pydicom','pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_command_has_help(capsys):
    import importlib

    for module_name, _, command in COMMANDS:
        try:
            importlib.import_module(f"pipeline.commands.{module_name}")
        except ModuleNotFoundError:
            continue
        assert main([command, "--help"]) == 0
        assert "Usage" in capsys.readouterr().out


def test_user_error_exits_2_with_message(capsys):
    assert main(["bench", "nonsense"]) == 2
    assert "must be one of" in capsys.readouterr().err
