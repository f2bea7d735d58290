"""What every ``twin-bridge`` command shares: the consoles, failing with an exit code, the
settings, the migrated store, and stopping on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperGroup

from bridge.settings import Settings

if TYPE_CHECKING:
    from bridge.devstack.datadir import RunningStack
    from bridge.store.repository import Store

DevOption = Annotated[
    bool,
    typer.Option(
        "--dev",
        help="Use the running dev stack (`make run`; its dev.json in TWIN_BRIDGE_DATA_DIR). "
        "The default when one runs and no network, RPC or API is given.",
    ),
]


def stdout() -> Console:
    """The console for a command's results."""
    return Console(highlight=False)


def stderr() -> Console:
    """The console for progress, notes and errors."""
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Prints ``message`` in red on stderr; the caller raises the exit with ``code`` it returns."""
    stderr().print(message, style="red", markup=False, soft_wrap=True)
    return typer.Exit(code)


def no_secret_file(option: str) -> str:
    """What to say when ``option`` names no readable file: never the value given, which may be a
    key or a password typed in the wrong place."""
    return (
        f"{option} names no readable file; the value given is not repeated here (it may be a "
        "secret typed in the wrong place)"
    )


def load_settings() -> Settings:
    """The ``TWIN_BRIDGE_*`` settings; exits 2 saying what is wrong with them."""
    try:
        return Settings()
    except ValidationError as exc:
        raise fail(f"invalid TWIN_BRIDGE_* settings:\n{exc}", 2) from exc


def with_deployment(settings: Settings) -> Settings:
    """``settings`` with the ledger of ``TWIN_BRIDGE_DEPLOYMENT`` once the manifest is checked
    against the chain (see :func:`bridge.deploy.manifest.apply_deployment`); exits 2 if it
    does not match."""
    from bridge.deploy.errors import DeploymentError
    from bridge.deploy.manifest import apply_deployment

    try:
        return apply_deployment(settings)
    except DeploymentError as exc:
        raise fail(str(exc), 2) from exc


def dev_stack(*, asked: bool, elsewhere: bool) -> RunningStack | None:
    """The running dev stack a command uses: with ``--dev`` (``asked``; exits 2 when none runs),
    else the one running from the data directory unless the options name another chain or API
    (``elsewhere``). Says on stderr which one it uses."""
    from bridge.devstack.datadir import require_running_stack, running_stack
    from bridge.devstack.options import DevError

    data_dir = load_settings().data_dir
    stack: RunningStack | None
    if asked:
        try:
            stack = require_running_stack(data_dir)
        except DevError as exc:
            raise fail(str(exc), 2) from exc
    else:
        stack = None if elsewhere else running_stack(data_dir)
    if stack is not None:
        announce(stack)
    return stack


def announce(stack: RunningStack) -> None:
    """Says on stderr that the command uses the dev stack ``stack``."""
    stderr().print(
        f"using the dev stack of {stack.dev_json} (API {stack.api_url}, chain {stack.rpc_url})",
        markup=False,
        soft_wrap=True,
    )


def migrated_store(settings: Settings) -> Store:
    """The bridge's store, its database migrated to the latest schema first."""
    from bridge.store import migrate
    from bridge.store.repository import Store

    url = settings.resolved_database_url
    migrate.upgrade(url)
    return Store.from_url(url)


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (Ctrl-C): the long-running commands stop on
    it gracefully instead of being killed mid-step."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


class OptionsAnywhere(TyperGroup):
    """A command group whose own options may follow its command as well as precede it
    (``model show --api URL`` is ``model --api URL show``): each of them after the command is moved
    before it, unless the command takes an option of that name itself. (Typer builds on its own
    copy of click, so its objects are duck-typed here.)"""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        mine = {name: p for p in self.params for name in (*p.opts, *p.secondary_opts)}
        head, rest = _leading_options(args, mine)
        if not rest:
            return super().parse_args(ctx, args)
        command = self.get_command(ctx, rest[0])
        theirs = {
            name
            for p in (command.params if command is not None else [])
            for name in (*p.opts, *p.secondary_opts)
        }
        moved, kept = _split_options(rest[1:], {k: v for k, v in mine.items() if k not in theirs})
        return super().parse_args(ctx, [*head, *moved, rest[0], *kept])

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not command.epilog:
            names = ", ".join(p.opts[0] for p in self.params if p.param_type_name == "option")
            command.epilog = f"The options of `{self.name}` ({names}) may be given here too."
        return command


def _takes_value(param: Any, token: str) -> bool:
    return not getattr(param, "is_flag", False) and "=" not in token


def _leading_options(args: list[str], mine: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The group's options before its command, and the rest (the command first)."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        param = mine.get(args[i].split("=", 1)[0])
        i += 2 if param is not None and _takes_value(param, args[i]) else 1
    return args[:i], args[i:]


def _split_options(args: list[str], movable: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The ``movable`` options among ``args`` (with their values), and the other arguments."""
    moved: list[str] = []
    kept: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            kept += args[i:]
            break
        param = movable.get(arg.split("=", 1)[0])
        if param is None:
            kept.append(arg)
            i += 1
            continue
        width = 2 if _takes_value(param, arg) else 1
        moved += args[i : i + width]
        i += width
    return moved, kept
