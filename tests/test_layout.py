"""The package's structure: no import circles (imports inside functions included), the sub-packages
layered model → training → export → study → analysis → cli, the model importing only torch and the
standard library, and a command line that answers --help without importing torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "resattn"

#: sub-package -> the sub-packages it may import (besides itself and the shared base modules).
LAYERS: dict[str, set[str]] = {
    "model": set(),
    "training": {"model"},
    "export": {"model"},
    "study": {"model", "training", "export"},
    "analysis": {"model", "training", "study", "export"},
    "cli": {"model", "training", "study", "export", "analysis"},
}
#: Modules every sub-package may import: stdlib-only foundations.
BASE = {"resattn", "resattn.errors", "resattn.files", "resattn.tomlfile"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module an imported dotted name refers to (``resattn.model.net.build`` -> ``resattn.model.net``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str) -> dict[str, int]:
    """Every resattn module ``module`` imports, anywhere in the file (functions too) -> first line."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] == "resattn":
                target = _resolve(name)
                if target != module:
                    out.setdefault(target, node.lineno)
    if module == "resattn":  # the lazy public API: names resolved on first use
        import resattn

        for target in {*resattn._PUBLIC.values(), *resattn._MODULES.values()}:
            out.setdefault(target, 0)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_import_resolves_to_a_module_of_the_package() -> None:
    for module, targets in GRAPH.items():
        for target in targets:
            assert target in MODULES, f"{module} imports {target}, which is not a module of the package"


def test_no_import_circles() -> None:
    """Depth-first search for a back edge; the message spells the circle out."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                circle = [*stack[stack.index(nxt):], nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_subpackages_are_layered() -> None:
    for module, targets in GRAPH.items():
        own = _subpackage(module)
        if own is None:  # resattn, resattn.errors, resattn.files: the base imports no sub-package
            assert module == "resattn" or not {_subpackage(t) for t in targets} - {None}, module
            continue
        for target, line in targets.items():
            other = _subpackage(target)
            if other is None or other == own:
                assert other is not None or target in BASE, f"{module} imports {target}"
                continue
            assert other in LAYERS[own], f"{module}:{line} imports {target}: {own} must not depend on {other}"


def test_model_imports_only_torch_math_and_the_standard_library() -> None:
    """What the exporter copies must run where only torch is installed."""
    for module, path in MODULES.items():
        if _subpackage(module) != "model":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in ("torch", "resattn") or root in sys.stdlib_module_names, f"{module} imports {root}"
    for module, targets in GRAPH.items():
        if _subpackage(module) == "model":
            assert all(_subpackage(t) == "model" or t in BASE for t in targets), (module, targets)


@pytest.mark.parametrize(
    "argv",
    [
        ["resattn", "--help"],
        ["resattn-search", "--help"],
        ["resattn", "export", "--help"],
        ["resattn-search", "--trials", "0"],  # an argument error
        ["resattn", "show", "--no-such-option"],
    ],
    ids=lambda a: " ".join(a),
)
def test_the_command_line_answers_without_importing_torch(argv: list[str]) -> None:
    entry = "search_main" if argv[0] == "resattn-search" else "main"
    code = (
        "import sys\n"
        f"from resattn.cli.main import {entry}\n"
        "try:\n"
        f"    {entry}({argv[1:]!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "heavy = sorted(m for m in ('torch', 'optuna', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'CODE', code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert "HEAVY [] CODE" in proc.stdout, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_package_version_is_the_project_version() -> None:
    import tomllib

    import resattn

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert resattn.__version__ == project["version"]
