"""Sub-commands of ``resattn`` that live in their own modules.

Every module here registers its commands on :data:`resattn.cli.app` when imported; ``resattn.cli``
imports them all (``pkgutil``), so adding a command is adding a file. The shared helpers
(``_guard``, ``resolve_file``, the consoles, ``_fail``) come from :mod:`resattn.cli`.
"""
