"""The command line (see :mod:`resattn.cli.main`): ``resattn`` and ``resattn-search``."""

from resattn.cli.main import app, main, search_main

__all__ = ["app", "main", "search_main"]
