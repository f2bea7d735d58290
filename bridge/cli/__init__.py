"""``twin-bridge``: one typer app (``app``) assembled from one module per command group, with the
helpers they share in ``common``."""
