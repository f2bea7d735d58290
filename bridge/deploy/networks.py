"""The networks of ``deploy/networks.toml``: chain, RPC URLs, fee cap, token, the ledger's
settings, roles and their delay, and the deployer's key, with ``${NAME}`` / ``${NAME:-default}``
environment references expanded."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from web3 import Web3

from bridge.chain.ledger import MIN_NOTICE_PERIOD, LedgerConfig
from bridge.chain.rpc import NoRpcAnswersError, connect_web3
from bridge.chain.signers import DEV_CHAIN_IDS, load_signer, read_password
from bridge.chain.toolchain import REPO_ROOT
from bridge.deploy.errors import DeploymentError
from bridge.errors import SigningKeyError

DEFAULT_NETWORKS_FILE: Final = REPO_ROOT / "deploy" / "networks.toml"
DEFAULT_DEPLOYMENTS_DIR: Final = REPO_ROOT / "deploy" / "deployments"

DEPLOYER: Final = "deployer"
"""In a network's roles: the deployer's own address."""
MOCK_TOKEN: Final = "mock"  # noqa: S105 - a token contract, not a secret
"""As a network's token: deploy the MockStablecoin (test chains only)."""

TEST_CHAIN_IDS: Final = DEV_CHAIN_IDS | {11155111, 17000, 560048}
"""Chains where the MockStablecoin (anyone may mint it) may be deployed: local dev chains,
Sepolia, Holesky and Hoodi."""

_ENV_REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class FrozenModel(BaseModel):
    """A configuration or record model: unknown fields refused, instances immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySource(FrozenModel):
    """Where a key comes from: a keystore v3 file with its password (from a file or an environment
    variable), or, on local dev chains only, a raw private key (inline or from a variable)."""

    keystore: Path | None = None
    password_file: Path | None = None
    password_env: str | None = None
    private_key: SecretStr | None = None
    private_key_env: str | None = None

    def describe(self) -> str:
        """Where the key comes from, in words (never the secret)."""
        if self.keystore is not None:
            password = (
                f"password file {self.password_file}"
                if self.password_file is not None
                else f"password in ${self.password_env}"
            )
            return f"keystore {self.keystore} ({password})"
        if self.private_key_env is not None:
            return f"raw key in ${self.private_key_env}"
        return "raw key in the networks file"

    def password_available(self, environ: Mapping[str, str] | None = None) -> bool:
        """Whether a password can be had without asking (keystores only)."""
        env = os.environ if environ is None else environ
        if self.password_file is not None:
            return self.password_file.is_file()
        return self.password_env is not None and self.password_env in env

    def load(
        self, role: str, *, chain_id: int, environ: Mapping[str, str] | None = None
    ) -> LocalAccount:
        """The key, decrypted; the rules of :func:`bridge.chain.signers.load_signer` apply (raw keys
        only on chains 31337 and 1337).

        Raises:
            SigningKeyError: no key, no password, or a key that cannot be read or decrypted.
        """
        env = os.environ if environ is None else environ
        private_key: str | None = None
        if self.private_key is not None:
            private_key = self.private_key.get_secret_value()
        elif self.private_key_env is not None:
            private_key = env.get(self.private_key_env)
            if private_key is None:
                raise SigningKeyError(role, f"${self.private_key_env} is not set")
        password: str | None = None
        if self.keystore is not None:
            try:
                password = read_password(
                    password_file=self.password_file,
                    password=None if self.password_env is None else env.get(self.password_env),
                )
            except OSError as exc:
                raise SigningKeyError(role, f"cannot read password file: {exc}") from exc
            if password is None and self.password_env is not None:
                raise SigningKeyError(
                    role, f"no password for keystore {self.keystore}: set ${self.password_env}"
                )
        return load_signer(
            role,
            chain_id=chain_id,
            keystore=self.keystore,
            password=password,
            private_key=private_key,
        )


class RolesConfig(FrozenModel):
    """Who holds each role after deployment: addresses or ``"deployer"``."""

    admin: str = DEPLOYER
    registrar: tuple[str, ...] = (DEPLOYER,)
    attester: tuple[str, ...] = ()
    pauser: tuple[str, ...] = (DEPLOYER,)


class NetworkConfig(FrozenModel):
    """One network of ``deploy/networks.toml``.

    String values may name environment variables as ``${NAME}`` or ``${NAME:-default}``; RPC URLs
    whose variables are unset are left out, and any other unset variable is listed in
    ``missing_env`` (``require_env`` then refuses the network).
    """

    name: str
    chain_id: int = Field(gt=0)
    rpc_urls: tuple[str, ...] = ()
    confirmations: int = Field(default=1, ge=1, le=1000)
    max_fee_per_gas_wei: int = Field(gt=0)
    token: str = MOCK_TOKEN
    role_delay: int = Field(
        default=0,
        ge=0,
        lt=2**32,
        description="Grant delay of the registrar, attester and pauser roles, and the admin's "
        "execution delay, in seconds.",
    )
    notice_period: int = Field(default=MIN_NOTICE_PERIOD, ge=MIN_NOTICE_PERIOD, lt=2**40)
    spending_period: int = Field(default=86_400, gt=0, lt=2**32)
    raise_delay: int = Field(default=86_400, ge=0, lt=2**32)
    default_per_usage: int = Field(
        default=50_000, gt=0, description="Default spending limit per usage, in whole tokens."
    )
    default_per_period: int = Field(
        default=250_000, gt=0, description="Default spending limit per period, in whole tokens."
    )
    hold_window: int = Field(
        default=0,
        ge=0,
        lt=2**32,
        description="Seconds a settlement's royalties are held (voidable by the brand, disputable "
        "by the model) before they can be distributed; 0: at once.",
    )
    block_time_s: float = Field(default=12.0, gt=0, description="Expected seconds per block.")
    receipt_timeout_s: float = Field(default=600.0, gt=0)
    roles: RolesConfig = RolesConfig()
    deployer: KeySource = KeySource()
    missing_env: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _limits_ordered(self) -> NetworkConfig:
        if self.default_per_usage > self.default_per_period:
            raise ValueError(
                f"default_per_usage {self.default_per_usage} is above default_per_period "
                f"{self.default_per_period}"
            )
        return self

    def ledger_config(self, decimals: int) -> LedgerConfig:
        """The ledger's ``Config`` for a payment token with ``decimals`` decimals."""
        unit = 10**decimals
        return LedgerConfig(
            notice_period=self.notice_period,
            spending_period=self.spending_period,
            raise_delay=self.raise_delay,
            default_per_usage=self.default_per_usage * unit,
            default_per_period=self.default_per_period * unit,
            hold_window=self.hold_window,
        )

    def require_env(self) -> None:
        """Raises DeploymentError naming the environment variables the network needs but lacks."""
        if self.missing_env:
            raise DeploymentError(
                f"network {self.name} needs the environment variable"
                f"{'s' if len(self.missing_env) > 1 else ''} {', '.join(self.missing_env)}"
            )

    def default_manifest_path(self, deployments_dir: Path = DEFAULT_DEPLOYMENTS_DIR) -> Path:
        """``deploy/deployments/<name>.json``."""
        return deployments_dir / f"{self.name}.json"

    def load_deployer(self, environ: Mapping[str, str] | None = None) -> LocalAccount:
        """The deployer's key (see :meth:`KeySource.load`)."""
        return self.deployer.load("deployer", chain_id=self.chain_id, environ=environ)

    def role_holders(self, deployer: str) -> dict[str, tuple[ChecksumAddress, ...]]:
        """Role constant name -> the accounts that should hold it, ``"deployer"`` resolved.

        Raises:
            DeploymentError: an entry is neither ``"deployer"`` nor an address.
        """

        def resolve(value: str, role: str) -> ChecksumAddress:
            if value == DEPLOYER:
                return to_checksum_address(deployer)
            if not is_address(value):
                raise DeploymentError(
                    f"network {self.name}: {role} {value!r} is neither {DEPLOYER!r} nor an address"
                )
            return to_checksum_address(value)

        def resolve_all(values: Sequence[str], role: str) -> tuple[ChecksumAddress, ...]:
            return tuple(dict.fromkeys(resolve(v, role) for v in values))

        return {
            "ADMIN_ROLE": (resolve(self.roles.admin, "admin"),),
            "REGISTRAR_ROLE": resolve_all(self.roles.registrar, "registrar"),
            "ATTESTER_ROLE": resolve_all(self.roles.attester, "attester"),
            "PAUSER_ROLE": resolve_all(self.roles.pauser, "pauser"),
        }

    @property
    def deploys_mock_token(self) -> bool:
        return self.token == MOCK_TOKEN


def load_networks(
    path: Path = DEFAULT_NETWORKS_FILE, *, environ: Mapping[str, str] | None = None
) -> dict[str, NetworkConfig]:
    """The networks of a ``networks.toml`` file (``[networks.<name>]`` tables), with environment
    references expanded (relative paths stay relative to the working directory).

    Raises:
        DeploymentError: the file cannot be read or a network is malformed.
    """
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeploymentError(f"cannot read networks file {path}: {exc}") from exc
    tables = data.get("networks")
    if not isinstance(tables, dict) or not tables:
        raise DeploymentError(f"{path} defines no [networks.<name>] table")
    return {name: _network(path, name, table, env) for name, table in tables.items()}


def _network(path: Path, name: str, table: Any, environ: Mapping[str, str]) -> NetworkConfig:
    """One ``[networks.<name>]`` table, expanded: the RPC URLs whose variables are set; when none
    is, the first URL's unset variables count as missing."""
    if not isinstance(table, dict):
        raise DeploymentError(f"{path}: networks.{name} is not a table")
    missing: list[str] = []
    urls: list[str] = []
    url_missing: list[str] = []
    for url in table.get("rpc_urls", []):
        unset: list[str] = []
        expanded = _expand(url, environ, unset)
        if expanded is not None:
            urls.append(expanded)
        elif not url_missing:
            url_missing = unset  # the first URL's variables are the ones to ask for
    if not urls:
        missing.extend(url_missing)
    rest = {k: v for k, v in table.items() if k != "rpc_urls"}
    expanded_rest = _expand_tree(rest, environ, missing)
    try:
        return NetworkConfig(
            name=name,
            rpc_urls=tuple(urls),
            missing_env=tuple(dict.fromkeys(missing)),
            **expanded_rest,
        )
    except ValidationError as exc:
        raise DeploymentError(f"{path}: network {name} is malformed:\n{exc}") from exc


def _expand(value: str, environ: Mapping[str, str], missing: list[str]) -> str | None:
    """``value`` with ``${NAME}`` / ``${NAME:-default}`` replaced; None if a variable is unset."""
    unset: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        unset.append(name)
        return match.group(0)

    result = _ENV_REFERENCE.sub(replace, value)
    missing.extend(unset)
    return None if unset else result


def _expand_tree(value: Any, environ: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(value, str):
        expanded = _expand(value, environ, missing)
        return value if expanded is None else expanded
    if isinstance(value, dict):
        return {k: _expand_tree(v, environ, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_tree(v, environ, missing) for v in value]
    return value


def connect(rpc_urls: Sequence[str], *, timeout: float = 30.0) -> Web3:
    """A Web3 on the first of ``rpc_urls`` that answers (``bridge.chain.rpc.connect_web3``).

    Raises:
        DeploymentError: none answers.
    """
    try:
        return connect_web3(rpc_urls, timeout=timeout)
    except NoRpcAnswersError as exc:
        if not exc.errors:
            raise DeploymentError("no RPC URL configured") from exc
        raise DeploymentError(f"no RPC answers ({'; '.join(exc.errors)})") from exc


def chain_id_of(w3: Web3) -> int:
    """The RPC's chain id, or DeploymentError in words when it cannot be asked."""
    try:
        return int(w3.eth.chain_id)
    except Exception as exc:  # any failure to reach the node means the same here
        raise DeploymentError(f"cannot reach the RPC {endpoint_of(w3)}: {exc}") from exc


def endpoint_of(w3: Web3) -> str:
    """The RPC URL ``w3`` talks to, for messages."""
    return str(getattr(w3.provider, "endpoint_uri", None) or w3.provider)
