"""The README cannot go stale: every command of its examples runs against a fresh dev stack and
prints what the README says.

One ``twin-bridge dev`` stack (what ``make run`` runs) starts in a temporary data directory on free
ports, with half-second blocks, for the module. The ``sh`` blocks of "From clone to running" after
the first (which starts the stack: ``make run``, ``make test``) and of "Using it" are split into
commands, which run in order in one bash, as a reader in a second terminal would type them:
``.venv/bin`` on the ``PATH``, the stack's ``TWIN_BRIDGE_DATA_DIR``, no other ``TWIN_BRIDGE_*``
variable, in an empty directory. Each command's output (stdout and stderr, as the terminal shows
them) is compared line by line, whitespace-normalised, with the ``# -> …`` lines that follow it in
the README, where ``…`` stands for any text (a line of only ``…`` for any lines). A first line
``# -> (exit N) …`` says the command ends with exit code N; any other command must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest

pytestmark = pytest.mark.integration

REPO: Final = Path(__file__).resolve().parent.parent
README: Final = REPO / "README.md"
SECTIONS: Final = ("From clone to running", "Using it")
EXPECT: Final = "# -> "
ANY: Final = "…"
EXIT: Final = re.compile(r"\(exit (\d+)\) ?")
HEREDOC: Final = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
START_TIMEOUT_S: Final = 180.0
RUN_TIMEOUT_S: Final = 150.0
BLOCK_TIME_S: Final = 0.5
"""Half of ``make run``'s default (``make run DEV_ARGS="--block-time 0.5"``, as
``tests/bridge/test_dev_stack.py`` runs it): the stack starts and each transaction is mined sooner,
which keeps this module within two minutes."""
READER_VARIABLES: Final = ("KEY", "BRAND", "RPC", "EVENT")
"""Variables the README's commands set: none may leak in from the test's own environment."""


# ---------------------------------------------------------------- the README's examples


@dataclass(frozen=True)
class Example:
    """One command of the README, where it starts, what it must print and its exit code."""

    line: int
    command: str
    expected: tuple[str, ...]
    exit_code: int

    @property
    def name(self) -> str:
        words = re.sub(r"[^\w$.-]+", " ", self.command.splitlines()[0]).split()
        return f"L{self.line}-{'-'.join(words[:4])}"


def _section(lines: list[str], title: str) -> tuple[int, int]:
    """The line range of the ``## title`` section."""
    start = lines.index(f"## {title}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return start, end


def _sh_blocks(lines: list[str], start: int, end: int) -> list[list[tuple[int, str]]]:
    """The ``sh`` blocks between two lines: (README line number, text) per line."""
    blocks: list[list[tuple[int, str]]] = []
    block: list[tuple[int, str]] | None = None
    for i in range(start, end):
        if block is None and lines[i] == "```sh":
            block = []
        elif block is not None and lines[i] == "```":
            blocks.append(block)
            block = None
        elif block is not None:
            block.append((i + 1, lines[i]))
    return blocks


def _complete(text: str) -> bool:
    """Whether ``text`` is a whole shell command (no continuation, quote or compound left open)."""
    if text.endswith("\\"):
        return False
    check = subprocess.run(["bash", "-n", "-c", text], capture_output=True, check=False)  # noqa: S607
    return check.returncode == 0


def _example(line: int, command: list[str], expected: list[str]) -> Example:
    exit_code = 0
    if expected and (marker := EXIT.match(expected[0])):
        exit_code = int(marker.group(1))
        expected = [expected[0][marker.end() :], *expected[1:]]
    return Example(line, "\n".join(command), tuple(expected), exit_code)


def _commands(block: list[tuple[int, str]]) -> list[Example]:
    """The block's commands with the ``# ->`` lines after each; other comments are skipped."""
    found: list[tuple[int, list[str], list[str]]] = []
    current: list[str] = []
    heredoc: str | None = None
    for number, line in block:
        if current:
            current.append(line)
        elif line.startswith(EXPECT):
            assert found, f"README.md:{number}: an expected output with no command before it"
            found[-1][2].append(line[len(EXPECT) :])
            continue
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        else:
            current = [line]
            found.append((number, current, []))
        if heredoc is None and (opened := HEREDOC.search(line)) and len(current) == 1:
            heredoc = opened.group(2)
            continue
        if heredoc is not None:
            if line.strip() != heredoc:
                continue
            heredoc = None
        if _complete("\n".join(current)):
            current = []
    assert not current, f"README.md:{found[-1][0]}: a command that never ends"
    return [_example(line, command, expected) for line, command, expected in found]


def readme_examples(text: str) -> list[Example]:
    """Every command of the README's try-it block and "Using it" section, in order."""
    lines = text.splitlines()
    examples: list[Example] = []
    for title in SECTIONS:
        blocks = _sh_blocks(lines, *_section(lines, title))
        if title == "From clone to running":  # its first block starts the stack: the fixture's
            first = [c.command.split("#")[0].strip() for c in _commands(blocks[0])]
            assert first == ["make run", "make test"], first
            blocks = blocks[1:]
        for block in blocks:
            examples += _commands(block)
    return examples


EXAMPLES: Final = readme_examples(README.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- matching


def _normal(line: str) -> str:
    return " ".join(line.split())


def _line_matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in _normal(expected).split(ANY))
    return re.fullmatch(pattern, actual) is not None


def output_matches(expected: tuple[str, ...], output: str) -> bool:
    """Whether ``output``'s non-blank lines match ``expected`` one for one (``…`` alone: any)."""
    actual = [_normal(line) for line in output.splitlines() if line.strip()]

    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if _normal(expected[i]) == ANY:
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and _line_matches(expected[i], actual[j]) and match(i + 1, j + 1)

    return match(0, 0)


def test_the_matcher_takes_ellipses_for_any_text_and_compares_line_by_line() -> None:
    expected = ("deposited 2,500.00 USD for 0x976EA…0aa9: in block …, transaction 0x…",)
    assert output_matches(
        expected,
        "deposited  2,500.00 USD for 0x976EA74026E7aa9 0aa9: in block 12, transaction 0xab\n",
    )
    assert not output_matches(
        expected, "deposited 2,500.00 USD for 0x9965…: in block 12, transaction 0xab"
    )
    assert not output_matches(
        expected, "deposited 2,500.00 USD for 0x976EA0aa9: in block 1, transaction 0x\nmore"
    )
    assert output_matches(("a", ANY, "z"), "a\nb\nc\nz")
    assert output_matches(("a", ANY, "z"), "a\n\nz")
    assert not output_matches(("a", ANY, "z"), "a\nb")
    assert not output_matches((), "anything")
    assert output_matches((), "\n")


def test_commands_are_split_at_their_ends_and_keep_their_expected_lines() -> None:
    block = """\
# a comment
curl -s -X POST $URL \\
     -d '{"a":1,
          "b":2}'
# -> {"a":1,…}
cat > f.json <<EOF
[1, "$(date)"]
EOF
false   # fails on purpose
# -> (exit 1) …"""
    examples = _commands([(i + 1, line) for i, line in enumerate(block.splitlines())])
    assert [(e.line, e.command.count("\n"), e.expected, e.exit_code) for e in examples] == [
        (2, 2, ('{"a":1,…}',), 0),
        (6, 2, (), 0),
        (9, 0, ("…",), 1),
    ]


def test_the_readme_has_examples_in_every_part() -> None:
    commands = [e.command for e in EXAMPLES]
    assert commands[0] == 'eval "$(twin-bridge dev env)"'
    for part in ("twin-bridge brand create", "twin-bridge model show", "twin-bridge audit"):
        assert any(c.startswith(part) for c in commands), part


# ---------------------------------------------------------------- the stack and the run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reader_env(data_dir: Path) -> dict[str, str]:
    """A second terminal's environment: the venv's ``bin`` on the PATH and the stack's data dir;
    a wide terminal, and Python's output unbuffered, so that stdout and stderr interleave as a
    terminal shows them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TWIN_BRIDGE_") and k not in READER_VARIABLES
    }
    venv_bin = Path(sys.executable).parent
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["TWIN_BRIDGE_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "400"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_ready(proc: subprocess.Popen[bytes], out: Path, dev_json: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"twin-bridge dev exited with {proc.returncode}:\n{out.read_text()}")
        try:
            ready = json.loads(dev_json.read_text(encoding="utf-8")).get("ready") is True
        except (OSError, ValueError):
            ready = False
        if ready and "Ctrl-C stops everything" in out.read_text(encoding="utf-8"):
            api = json.loads(dev_json.read_text(encoding="utf-8"))["api_url"]
            assert httpx.get(f"{api}/readyz", timeout=5).status_code == 200
            return
        time.sleep(0.5)
    pytest.fail(f"the dev stack was not ready in {START_TIMEOUT_S} s:\n{out.read_text()}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The data directory of a fresh ``twin-bridge dev`` stack, running until the module ends."""
    root = tmp_path_factory.mktemp("readme")
    data = root / "data"
    out = root / "dev.out"
    argv = [
        str(Path(sys.executable).parent / "twin-bridge"),
        "dev",
        "--rpc-port",
        str(_free_port()),
        "--api-port",
        str(_free_port()),
        "--block-time",
        str(BLOCK_TIME_S),
    ]
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=_reader_env(data),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(proc, out, data / "dev.json")
        yield data
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass(frozen=True)
class Ran:
    output: str
    exit_code: int | None
    """None: the run timed out before the command ended."""
    seconds: float = 0.0


def _script(examples: list[Example], out: Path) -> str:
    """One bash script running the commands in order, each one's output and exit code to files."""
    steps = []
    for i, example in enumerate(examples):
        output, code = shlex.quote(str(out / f"{i}.out")), shlex.quote(str(out / f"{i}.rc"))
        steps.append(
            f"__started=$EPOCHREALTIME\n{{\n{example.command}\n}} >{output} 2>&1 </dev/null\n"
            f'echo "$? $__started $EPOCHREALTIME" >{code}\n'
        )
    return "".join(steps)


@pytest.fixture(scope="module")
def ran(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[Example, Ran]:
    """Every example run once, in order, in one bash in an empty directory."""
    out = tmp_path_factory.mktemp("outputs")
    work = tmp_path_factory.mktemp("reader")
    script = out / "readme.sh"
    script.write_text(_script(EXAMPLES, out), encoding="utf-8")
    proc = subprocess.Popen(
        ["bash", str(script)],  # noqa: S607
        cwd=work,
        env=_reader_env(data_dir),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    results = {}
    for i, example in enumerate(EXAMPLES):
        output = out / f"{i}.out"
        code = out / f"{i}.rc"
        text = output.read_text(encoding="utf-8", errors="replace") if output.exists() else ""
        if code.exists():
            status, started, ended = code.read_text().split()
            results[example] = Ran(text, int(status), float(ended) - float(started))
        else:
            results[example] = Ran(text, None)
    return results


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_the_readme_example_prints_what_the_readme_says(
    example: Example, ran: dict[Example, Ran]
) -> None:
    result = ran[example]
    said = "\n".join(f"{EXPECT}{line}" for line in example.expected) or "(nothing checked)"
    report = (
        f"README.md:{example.line}\n{example.command}\n--- the README says:\n{said}\n"
        f"--- exit code {result.exit_code} after {result.seconds:.1f} s, output:\n{result.output}"
    )
    assert result.exit_code is not None, f"did not end in {RUN_TIMEOUT_S} s\n{report}"
    assert result.exit_code == example.exit_code, report
    if example.expected:
        assert output_matches(example.expected, result.output), report


def test_dev_env_says_when_no_stack_runs(tmp_path: Path) -> None:
    env = _reader_env(tmp_path / "data")
    ran = subprocess.run(
        [str(Path(sys.executable).parent / "twin-bridge"), "dev", "env"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (ran.returncode, ran.stdout) == (1, "")
    assert " ".join(ran.stderr.split()) == (
        f"no Twin Bridge dev stack is running from {tmp_path / 'data'}: start one with `make run` "
        "(or `twin-bridge dev`) with the same TWIN_BRIDGE_DATA_DIR"
    )


def test_dev_env_exports_the_stack_and_the_example_brand_and_model(data_dir: Path) -> None:
    from eth_account import Account

    ran = subprocess.run(
        [str(Path(sys.executable).parent / "twin-bridge"), "dev", "env"],
        env=_reader_env(data_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    exports = dict(
        shlex.split(line, comments=True)[1].split("=", 1)
        for line in ran.stdout.splitlines()
        if line.startswith("export ")
    )
    info = json.loads((data_dir / "dev.json").read_text(encoding="utf-8"))
    [brand] = [b for b in info["brands"] if b["name"] == "Nordic Thread"]
    [model] = [m for m in info["models"] if m["twin_ids"] == [11]]
    keys = data_dir.resolve() / "keys"
    assert exports == {
        "TWIN_BRIDGE_DATA_DIR": str(data_dir.resolve()),
        "TWIN_BRIDGE_API_URL": info["api_url"],
        "RPC": info["rpc_url"],
        "BRAND": brand["address"],
        "KEY": brand["api_key"],
        "TWIN_BRIDGE_API_KEY": brand["api_key"],
        "TWIN_BRIDGE_BRAND_KEYSTORE": str(keys / "brand.json"),
        "TWIN_BRIDGE_BRAND_PASSWORD_FILE": str(keys / "password"),
        "TWIN_BRIDGE_MODEL_KEYSTORE": str(keys / "model.json"),
        "TWIN_BRIDGE_MODEL_PASSWORD_FILE": str(keys / "password"),
    }
    assert ran.stdout.startswith("# the Twin Bridge dev stack running from ")
    assert "anvil's well-known dev keys, public by design" in ran.stdout.splitlines()[0]
    password = (keys / "password").read_text(encoding="utf-8").strip()
    for keystore, owner in (("brand.json", brand), ("model.json", model)):
        key = Account.decrypt((keys / keystore).read_text(encoding="utf-8"), password)
        assert Account.from_key(key).address == owner["address"]
        assert (keys / keystore).stat().st_mode & 0o077 == 0
