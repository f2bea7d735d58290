"""Deploying the ledger to a named network and checking it: ``networks`` (the networks file),
``manifest`` (what was deployed where, checked against the chain and the build), ``plan``,
``sending`` and ``deployer`` (``twin-bridge deploy``: plan, send, record) and ``doctor``
(``twin-bridge doctor``)."""
