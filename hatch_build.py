"""Build hook: ship space/*.toml and search/*.toml inside the wheel as resattn/_builtin/.

Only for real wheels; an editable install reads them from the checkout (resattn.cli.resolve_file),
so it does not need (or get) a stray `resattn/_builtin` folder in site-packages.
"""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if version == "editable":
            return
        for folder in ("space", "search"):
            build_data["force_include"][folder] = f"resattn/_builtin/{folder}"
