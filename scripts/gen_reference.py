"""The README's CLI and configuration references, generated from the code so they cannot drift.

    python -m scripts.gen_reference           # rewrite the two sections of README.md
    python -m scripts.gen_reference --check   # exit 1 if README.md differs (the test suite runs it)

Sections sit between ``<!-- cli-reference:start -->`` / ``<!-- cli-reference:end -->`` and
``<!-- config-reference:start -->`` / ``<!-- config-reference:end -->``.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import typer.main
from pydantic import SecretStr

from bridge.cli.app import app
from bridge.settings import Settings

README: Final = Path(__file__).resolve().parent.parent / "README.md"
ENV_PREFIX: Final = "TWIN_BRIDGE_"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(param: Any) -> str:
    if getattr(param, "is_flag", False) and param.secondary_opts:
        return f"`{param.opts[0] if param.default else param.secondary_opts[0]}`"
    default = param.default
    if default is None or default == () or param.required:
        return "required" if param.required else ""
    if callable(default):
        return ""
    if isinstance(default, Path) and default.is_absolute():
        default = default.relative_to(README.parent)  # the checkout's paths, not this machine's
    return f"`{default}`"


def _options(command: Any) -> list[str]:
    """One table row per parameter (typer builds on its own copy of click: duck-typed here)."""
    rows = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            names = f"`{param.name.upper()}`"
            help_text = getattr(param, "help", None) or ""
        else:
            names = ", ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts))
            help_text = param.help or ""
            if param.envvar:
                help_text += f" (env `{param.envvar}`)"
        rows.append(f"| {names} | {_default(param)} | {_cell(help_text)} |")
    return rows


def _walk(command: Any, path: list[str]) -> list[str]:
    lines: list[str] = []
    if hasattr(command, "commands"):
        if path != ["twin-bridge"]:
            lines += [f"#### `{' '.join(path)}`", "", _cell(command.help or ""), ""]
            rows = _options(command)
            if rows:  # options given before the subcommand
                lines += ["| option | default | what |", "|---|---|---|", *rows, ""]
        for name in sorted(command.commands):
            lines += _walk(command.commands[name], [*path, name])
        return lines
    lines += [f"#### `{' '.join(path)}`", "", _cell(command.help or ""), ""]
    rows = _options(command)
    if rows:
        lines += ["| option | default | what |", "|---|---|---|", *rows, ""]
    return lines


def cli_reference() -> str:
    root = typer.main.get_command(app)
    head = [
        "`twin-bridge --help` lists the commands; each takes `--help`. Every command also reads",
        "the settings below from `TWIN_BRIDGE_*` variables.",
        "",
    ]
    return "\n".join(head + _walk(root, ["twin-bridge"])).rstrip() + "\n"


def _setting_default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        return f"`{seconds:g}` s" if seconds < 86_400 else f"`{seconds / 86_400:g}` days"
    if isinstance(value, list):
        return "`[]`" if not value else f"`{value}`"
    return f"`{value}`"


def config_reference() -> str:
    lines = [
        "Every setting is read from the environment variable shown (pydantic-settings; durations",
        "take seconds or ISO 8601, lists JSON).",
        "",
        "| variable | default | what |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        lines.append(
            f"| `{ENV_PREFIX}{name.upper()}` | {_setting_default(default)} | "
            f"{_cell(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"


def _replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", flags=re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> section")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def render(text: str) -> str:
    text = _replace(text, "cli-reference", cli_reference())
    return _replace(text, "config-reference", config_reference())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("README.md's references are out of date: run python -m scripts.gen_reference")
            return 1
        return 0
    if wanted != current:
        README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
