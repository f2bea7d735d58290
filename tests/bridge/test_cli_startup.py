"""The command line starts fast: ``twin-bridge --help`` and a model's commands import neither web3
nor eth-account, SQLAlchemy or FastAPI; the constants kept apart to allow it stay equal to the
originals, and the root's one-line helps to the commands' own."""

from __future__ import annotations

import json
import subprocess
import sys

from bridge.audit.scan import DEFAULT_MAX_BLOCK_RANGE
from bridge.cli import audit, deploy, model
from bridge.cli.app import COMMANDS, load_command
from bridge.deploy.doctor import DEFAULT_BATCHES
from bridge.deploy.networks import DEFAULT_NETWORKS_FILE
from bridge.intake.owner_messages import MAX_PAYOUT_TWINS

HEAVY = ("web3", "eth_account", "eth_abi", "sqlalchemy", "fastapi", "solcx")


def _imported_after(code: str) -> list[str]:
    """Which of ``HEAVY`` a fresh interpreter has imported after running ``code``."""
    listed = f"[m for m in {HEAVY!r} if m in sys.modules]"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({listed}))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_cli_app_imports_no_heavy_library() -> None:
    assert _imported_after("import bridge.cli.app") == []


def test_a_models_commands_import_no_heavy_library_until_they_sign() -> None:
    assert _imported_after("import bridge.cli.model") == []


def test_root_help_lists_every_command_without_importing_it() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom bridge.cli.app import app\n"
        "result = CliRunner().invoke(app, ['--help'])\nassert result.exit_code == 0\n"
        "assert all(name in result.stdout for name in ('audit', 'doctor', 'model', 'dev'))"
    )
    assert _imported_after(code) == []


def test_the_root_tables_one_line_helps_open_the_commands_own() -> None:
    for name, (_module, short) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        assert " ".join(command.help.split()).startswith(short.rstrip(".")), name


def test_constants_kept_apart_for_a_fast_start_equal_the_originals() -> None:
    assert audit.DEFAULT_MAX_BLOCK_RANGE == DEFAULT_MAX_BLOCK_RANGE
    assert deploy.DEFAULT_NETWORKS_FILE == DEFAULT_NETWORKS_FILE
    assert deploy.DEFAULT_BATCHES == DEFAULT_BATCHES
    assert model.MAX_PAYOUT_TWINS == MAX_PAYOUT_TWINS
