"""Twin Bridge: settles digital-twin usage on chain."""

__version__ = "0.1.0"
