"""The README's CLI and configuration references are generated from the code
(``python -m scripts.gen_reference``); a change to a command or a setting must update them."""

from __future__ import annotations

import re

from scripts.gen_reference import README, cli_reference, config_reference, render


def test_the_readme_references_match_the_code() -> None:
    current = README.read_text(encoding="utf-8")
    assert render(current) == current, "run: python -m scripts.gen_reference"


def test_every_command_and_setting_is_in_the_references() -> None:
    cli = cli_reference()
    commands = (
        "dev", "serve", "worker", "indexer", "deploy", "doctor", "audit",
        "model offer", "brand offers", "brand accept", "brand limits set",
    )  # fmt: skip
    for command in commands:
        assert f"#### `twin-bridge {command}`" in cli
    config = config_reference()
    row = "| `TWIN_BRIDGE_CONFIRMATIONS` | `1` | Blocks on top (incl. its own) before settled. |"
    assert row in config
    assert "/work/" not in cli + config


def _layout_block(readme: str) -> str:
    section = readme[readme.index("## Repository layout\n") :]
    return section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]


def test_the_repository_layout_names_every_folder_of_the_bridge() -> None:
    readme = README.read_text(encoding="utf-8")
    listed = {
        line.split()[0].rstrip("/")
        for line in _layout_block(readme).splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    }
    bridge = README.parent / "bridge"
    folders = {p.name for p in bridge.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert listed == folders


def test_every_bridge_path_the_readme_names_exists() -> None:
    readme = README.read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:bridge|tests|scripts)/[\w/.-]*)`", readme))
    assert len(paths) > 40
    missing = sorted(p for p in paths if not (README.parent / p.rstrip("/")).exists())
    assert missing == []
