"""``python -m bridge``: the ``twin-bridge`` command line."""

from bridge.cli.app import main

main()
