"""The README's CLI and configuration references are generated from the code
(``python -m scripts.gen_reference``); a change to a command or a setting must update them."""

from __future__ import annotations

from scripts.gen_reference import README, cli_reference, config_reference, render


def test_the_readme_references_match_the_code() -> None:
    current = README.read_text(encoding="utf-8")
    assert render(current) == current, "run: python -m scripts.gen_reference"


def test_every_command_and_setting_is_in_the_references() -> None:
    cli = cli_reference()
    commands = ("dev", "serve", "worker", "indexer", "deploy", "doctor", "audit", "model grant")
    for command in commands:
        assert f"#### `twin-bridge {command}`" in cli
    config = config_reference()
    row = "| `TWIN_BRIDGE_CONFIRMATIONS` | `1` | Blocks on top (incl. its own) before settled. |"
    assert row in config
    assert "/work/" not in cli + config
