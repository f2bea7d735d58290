"""What the model and brand commands share when they talk to a bridge from the user's machine: the
bridge's HTTP API (``Relay``), the user's own key (a keystore, or a raw key on a dev chain; never
echoed, even when given where a name or a path was expected), following a relayed action until it
is confirmed (amounts are ``bridge.cli.money``'s)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from bridge.cli.common import fail, no_secret_file, stderr, stdout
from bridge.client import BridgeApiError, BridgeHttp, RetryPolicy
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

FINAL: Final = frozenset({"confirmed", "failed"})
DEFAULT_API: Final = "http://127.0.0.1:8000"
RELAY_RETRY: Final = RetryPolicy(
    max_attempts=4, initial_wait=0.2, max_wait=2.0, retry_rate_limited=False
)
"""Network errors and 5xx are asked again (an action is identified by its signed digest, so
posting it twice relays it once); a 429 is reported at once."""

ApiOption = Annotated[
    str,
    typer.Option("--api", envvar="TWIN_BRIDGE_API_URL", help="The bridge's base URL."),
]
ApiOrDevOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        envvar="TWIN_BRIDGE_API_URL",
        help="The bridge's base URL (default: the running dev stack's, else "
        "http://127.0.0.1:8000).",
        show_default=False,
    ),
]
KeyEnvOption = Annotated[
    str | None,
    typer.Option(
        "--private-key-env",
        help="Name of a variable holding a raw key (local dev chains 31337/1337 only).",
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until the action is confirmed on chain.")
]


class RemoteCliError(BridgeError):
    """A model or brand command could not be done (the message says why)."""


class BridgeRefusedError(RemoteCliError):
    """The bridge answered with an error: its status and RFC 9457 problem are kept."""

    def __init__(self, status: int, problem: dict[str, Any], detail: str) -> None:
        from bridge.chain.reverts import explain

        self.status = status
        self.problem = problem
        self.detail = detail
        """The bridge's own words (a ledger error as ``describe_revert`` names it)."""
        super().__init__(f"the bridge refused ({status}): {explain(detail)}")

    @property
    def problem_type(self) -> str:
        """The problem's type without its URN prefix (``ledger-refuses``)."""
        return str(self.problem.get("type", "")).rpartition(":")[2]


@dataclass(frozen=True)
class Relay:
    """The bridge's endpoints (``bridge.client.BridgeHttp``); what goes wrong becomes a
    ``RemoteCliError`` in the bridge's words."""

    http: BridgeHttp

    @classmethod
    def at(cls, api: str, *, api_key: str | None = None) -> Relay:
        """The bridge at ``api``, as the brand of ``api_key`` when given."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        return cls(BridgeHttp(api, headers=headers, timeout=30, retry=RELAY_RETRY))

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self.http.json(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RemoteCliError(
                f"the bridge at {self.http.base_url} does not answer: {exc}"
            ) from exc
        except BridgeApiError as exc:
            raise BridgeRefusedError(exc.status, exc.problem, exc.detail) from exc


def load_key(
    role: str,
    *,
    chain_id: int,
    keystore: Path | None,
    password_file: Path | None,
    key_env: str | None,
) -> LocalAccount:
    """The ``role``'s key (``model``, ``brand``): a keystore with its password (a file, else
    ``$TWIN_BRIDGE_<ROLE>_PASSWORD``), or a raw key from ``key_env`` on a dev chain
    (``KeySource``'s rules).

    Raises:
        RemoteCliError: a secret was given where a variable's name or a file was expected (the
            value is never repeated), or the key cannot be had.
    """
    from bridge.deploy.networks import KeySource

    _refuse_secrets(role, keystore=keystore, password_file=password_file, key_env=key_env)
    password_env = f"TWIN_BRIDGE_{role.upper()}_PASSWORD"
    source = KeySource(
        keystore=keystore,
        password_file=password_file,
        password_env=None if password_file is not None else password_env,
        private_key_env=key_env,
    )
    return source.load(role, chain_id=chain_id)


_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RAW_KEY: Final = re.compile(r"(0x)?[0-9a-fA-F]{64}")


def _refuse_secrets(
    role: str, *, keystore: Path | None, password_file: Path | None, key_env: str | None
) -> None:
    """Refuses, without repeating them, a key given to ``--private-key-env`` (which takes a
    variable's name), and a ``--keystore`` or ``--password-file`` that is no file (it may be the
    key or the password itself): the messages of a missing variable or file would echo them.

    Raises:
        RemoteCliError: one of them.
    """
    if key_env is not None and (_RAW_KEY.fullmatch(key_env) or not _ENV_NAME.fullmatch(key_env)):
        raise RemoteCliError(
            "--private-key-env takes the name of an environment variable holding the key (e.g. "
            f"{role.upper()}_KEY), not the key itself; the value given is not repeated here"
        )
    for option, path in (("--keystore", keystore), ("--password-file", password_file)):
        if path is not None and not path.is_file():
            raise RemoteCliError(no_secret_file(option))


def follow(relay: Relay, action: dict[str, Any], *, wait: bool, timeout: float) -> dict[str, Any]:
    """Reports a relayed action and, with ``wait``, polls it until it is confirmed or failed.

    Raises:
        RemoteCliError: it failed, or is not final after ``timeout`` seconds.
    """
    stderr().print(f"owner action {action['id']} ({action['type']}): {action['status']}")
    deadline = time.monotonic() + timeout
    while wait and action["status"] not in FINAL:
        if time.monotonic() > deadline:
            raise RemoteCliError(
                f"owner action {action['id']} is still {action['status']} after {timeout:.0f} s"
            )
        time.sleep(0.5)
        action = relay.json("GET", f"/v1/owner-actions/{action['id']}")
    if action["status"] == "failed":
        raise RemoteCliError(f"owner action {action['id']} failed: {action['error']}")
    if action["status"] == "confirmed":
        stdout().print(
            f"confirmed in block {action['block_number']}, transaction {action['tx_hash']}",
            soft_wrap=True,
        )
    return action


@contextmanager
def reported() -> Iterator[None]:
    """A bridge error ends the command with exit code 1 and its message on stderr."""
    try:
        yield
    except BridgeError as exc:
        raise fail(str(exc), 1) from exc


def address(text: str, what: str) -> str:
    """``text`` as a checksummed address.

    Raises:
        RemoteCliError: not an address.
    """
    from eth_utils.address import is_address, to_checksum_address

    if not is_address(text):
        raise RemoteCliError(f"{what} {text!r} is not an Ethereum address")
    return to_checksum_address(text)
