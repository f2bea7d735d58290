"""The deploy package's error."""

from __future__ import annotations

from bridge.errors import BridgeError


class DeploymentError(BridgeError):
    """A deployment cannot go ahead, or a manifest does not match the chain or the artifacts."""
