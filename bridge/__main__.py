"""``python -m bridge``: the ``twin-bridge`` command line."""

from bridge.cli import main

main()
