"""The brand API (FastAPI)."""

from bridge.api.app import create_app

__all__ = ["create_app"]
