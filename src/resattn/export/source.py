"""Export an architecture as one self-contained, readable ``.py`` file (DESIGN.md §6).

The generated file imports only ``torch`` and the standard library. It holds the architecture's
spec as a literal (``SPEC``), the source of exactly the classes and helper functions that
architecture uses, **copied from the library itself** (:mod:`resattn.model`, and the module of any
attention registered at run time), a network class whose ``__init__`` spells the layers out one per
line, and ``build_model(num_classes)``. The model it builds has exactly the ``state_dict`` of
:func:`resattn.build` (same keys, shapes, parameters and buffers), so weights trained by resattn load
with ``strict=True`` and give identical outputs: both are made from the same plan
(:func:`resattn.model.net.plan`), once as objects and once as source text.

What is copied: the classes and functions named by the plan and the classes of the modules of the
built model, plus, transitively, every function, class or constant their source refers to in its
own module (found with :mod:`ast`; names used only in annotations do not count). Modules they refer
to become imports, allowed only for ``torch`` and the standard library.

Security: the spec is re-validated by its own validation (``NetSpec.from_json(spec.to_json())``),
whatever object was passed in, and the generator writes, besides the copied library source, only
identifiers and literals it checks right before writing them: strings match ``[a-z0-9_./]*``,
integers are real ``int`` values, floats are finite and written with ``repr``. Header values (study
name, placement, …) land in the module docstring only after sanitising to a safe character set.
Anything else is refused with an :class:`ExportError` and nothing is written.

Public API::

    export_source(spec, *, class_name="ResAttnNet", header=None) -> str
    write_export(path, spec, *, class_name="ResAttnNet", header=None) -> Path
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import inspect
import keyword
import math
import os
import re
import sys
import textwrap
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resattn.errors import ResattnError, SpecError
from resattn.files import atomic_write
from resattn.model.net import Call, Net, plan
from resattn.model.spec import BlockSpec, NetSpec

__all__ = ["ExportError", "check_class_name", "export_source", "revalidate", "write_export"]


class ExportError(ResattnError, ValueError):
    """An architecture, class name, header or trial that cannot be exported; the message says why."""


# ------------------------------------------------------------------------------ what may be written

_CLASS_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_IDENT_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_HEADER_KEY_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9_ ]{0,31}\Z")
#: Characters a header value may keep; everything else becomes ``?`` (whitespace becomes a space).
_UNSAFE_TEXT_RE = re.compile(r"[^A-Za-z0-9 _\-.,:;/+=()\[\]{}|<>@#%*!?&~^$γλ·×−]")
_MAX_HEADER_TEXT = 200
_MAX_HEADER_ITEMS = 256
#: Names the generated file defines besides the copied ones.
_FIXED_NAMES = frozenset({"annotations", "SPEC", "build_model"})
_LINE = 110  # longest line the generated code aims for


def _short(value: Any) -> str:
    """A bounded, one-line repr of a (possibly hostile) value for an error message."""
    try:
        text = repr(value)
    except Exception:  # a crafted object's __repr__ may raise
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def revalidate(spec: Any) -> NetSpec:
    """``spec`` read back through the spec's own validation (``NetSpec.from_dict(spec.to_dict())``),
    refusing, with an :class:`ExportError` naming the field, anything a validated spec cannot hold:
    values that are not exactly ``str``/``int``/``float``/``bool``/``None`` (subclasses with a crafted
    ``repr`` included), non-finite numbers, or a spec that reads back differently."""
    if not isinstance(spec, NetSpec):
        raise ExportError(f"cannot export: expected a NetSpec, got {type(spec).__name__}")
    layers = getattr(spec, "layers", None)
    if type(layers) is not tuple or not all(isinstance(layer, BlockSpec) for layer in layers):
        raise ExportError(f"cannot export: layers: must be a tuple of BlockSpec, got {_short(layers)}")
    try:
        data = spec.to_dict()
    except Exception as err:  # a tampered spec may hold anything
        what = f"{type(err).__name__}: {_short(err)}"
        raise ExportError(f"cannot export: the spec does not read as data ({what})") from None
    _check_plain(data, "")
    try:
        clean = NetSpec.from_dict(data)
    except SpecError as err:
        raise ExportError(f"cannot export: {err}") from None
    difference = _first_difference(data, clean.to_dict(), "")
    if difference is not None:
        raise ExportError(f"cannot export: {difference}: the spec does not read back as itself (was it tampered with?)")
    return clean


def _check_plain(value: Any, path: str) -> None:
    """Every leaf of ``value`` (a spec's ``to_dict()``) is exactly a plain JSON value."""
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ExportError(f"cannot export: {path or 'spec'}: key {_short(key)} is not text")
            _check_plain(item, f"{path}.{key}" if path else key)
    elif type(value) is list:
        for i, item in enumerate(value):
            _check_plain(item, f"{path}[{i}]")
    elif type(value) is float:
        if not math.isfinite(value):
            raise ExportError(f"cannot export: {path}: must be a finite number, got {_short(value)}")
    elif type(value) not in (str, int, bool) and value is not None:
        raise ExportError(f"cannot export: {path}: must be a plain value, got {type(value).__name__} {_short(value)}")


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    """The path of the first place where ``a`` and ``b`` differ in value or exact type, or None."""
    if type(a) is not type(b):
        return path or "spec"
    if isinstance(a, dict):
        for key in list(a) + [k for k in b if k not in a]:
            where = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                return where
            found = _first_difference(a[key], b[key], where)
            if found is not None:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return None if a == b else path


def check_class_name(class_name: Any) -> str:
    """``class_name`` if it can name the generated network class (a plain identifier, no keyword,
    no builtin, no name the generated file uses); :class:`ExportError` otherwise."""
    if type(class_name) is not str or not _CLASS_RE.fullmatch(class_name):
        raise ExportError(
            f"cannot export: class name must be a Python identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64 "
            f"characters), got {_short(class_name)}"
        )
    if keyword.iskeyword(class_name) or keyword.issoftkeyword(class_name):
        raise ExportError(f"cannot export: class name {class_name!r} is a Python keyword")
    if class_name.startswith("__") and class_name.endswith("__"):
        raise ExportError(f"cannot export: class name {class_name!r} is a reserved (dunder) name; choose another")
    if class_name in _FIXED_NAMES or class_name in dir(builtins):
        raise ExportError(
            f"cannot export: class name {class_name!r} would shadow a name the generated file uses; "
            "choose another"
        )
    return str(class_name)


# ----------------------------------------------------------------------------------- the header

def _clean_text(value: str) -> str:
    text = re.sub(r"\s", " ", value)
    text = _UNSAFE_TEXT_RE.sub("?", text)
    return text if len(text) <= _MAX_HEADER_TEXT else text[: _MAX_HEADER_TEXT - 3] + "..."


def _header_scalar(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if type(value) is bool:
        return "yes" if value else "no"
    if type(value) is int:
        return f"{int(value):,}"
    if type(value) is float:
        number = float(value)
        if not math.isfinite(number):
            return _clean_text(float.__repr__(number))
        return f"{number:,.0f}" if number.is_integer() and abs(number) >= 1000 else f"{number:.6g}"
    if type(value) is str:
        return _clean_text(str(value))
    raise ExportError(f"cannot export: header[{key!r}] must be text, a number or a list of them, "
                      f"got {type(value).__name__}")


def _header_lines(header: Mapping[str, Any] | None) -> list[str]:
    """``key: value`` lines for the module docstring, every piece sanitised."""
    if header is None:
        return []
    if not isinstance(header, Mapping):
        raise ExportError(f"cannot export: header must be a mapping, got {type(header).__name__}")
    items = list(header.items())
    if len(items) > _MAX_HEADER_ITEMS:
        raise ExportError(f"cannot export: header has {len(items)} entries (at most {_MAX_HEADER_ITEMS})")
    keys = []
    for key, _ in items:
        if type(key) is not str or not _HEADER_KEY_RE.fullmatch(key):
            raise ExportError(
                f"cannot export: header key must be a short name ([A-Za-z][A-Za-z0-9_ ]*), got {_short(key)}"
            )
        keys.append(str(key))
    width = max((len(k) for k in keys), default=0) + 2
    lines = []
    for key, (_, value) in zip(keys, items, strict=True):
        if type(value) in (list, tuple):
            if len(value) > _MAX_HEADER_ITEMS:
                raise ExportError(f"cannot export: header[{key!r}] has more than {_MAX_HEADER_ITEMS} items")
            lines.append(f"{key}:")
            lines += [f"    {_header_scalar(key, v)}" for v in value]
        else:
            lines.append(f"{(key + ':'):<{width}}{_header_scalar(key, value)}")
    return lines




# ------------------------------------------------------------------------------- the SPEC literal

_LITERAL_STR_RE = re.compile(r"\A[a-z0-9_./]{1,64}\Z")


def _leaf(value: Any) -> str:
    if type(value) is bool:
        return "True" if value else "False"
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    if type(value) is str and _LITERAL_STR_RE.fullmatch(value):
        return '"' + value + '"'
    raise ExportError(f"cannot export: internal error: refusing to write literal {_short(value)}")


def _literal(value: Any, indent: int = 0, width: int = 100) -> str:
    """A Python literal with black-like layout: one line when it fits, else one item per line."""
    if isinstance(value, dict):
        parts = [f"{_leaf(k)}: {_literal(v, indent + 4, width)}" for k, v in value.items()]
        opening, closing = "{", "}"
    elif isinstance(value, list):
        parts = [_literal(v, indent + 4, width) for v in value]
        opening, closing = "[", "]"
    else:
        return _leaf(value)
    flat = opening + ", ".join(parts) + closing
    if "\n" not in flat and indent + len(flat) <= width:
        return flat
    pad = " " * (indent + 4)
    return opening + "\n" + "".join(f"{pad}{p},\n" for p in parts) + " " * indent + closing


# ------------------------------------------------------------------------- what the file copies


def _allowed_module(name: str) -> bool:
    """Modules a generated file may import: torch and the standard library."""
    top = name.split(".")[0]
    return top == "torch" or top in sys.stdlib_module_names


def _import_line(alias: str, module: str) -> str:
    if alias == module:
        return f"import {module}"
    parent, _, leaf = module.rpartition(".")
    if parent and leaf == alias:
        return f"from {parent} import {alias}"
    return f"import {module} as {alias}"


def _names(tree: ast.AST) -> tuple[list[str], list[str]]:
    """The names a definition reads at run time, and those it uses only in annotations, each in
    order of appearance."""
    in_annotation: set[int] = set()
    for node in ast.walk(tree):
        annotations: list[ast.AST | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            annotations += [a.annotation for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
            annotations += [args.vararg.annotation if args.vararg else None,
                            args.kwarg.annotation if args.kwarg else None, node.returns]
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for ann in annotations:
            if ann is not None:
                in_annotation.update(id(n) for n in ast.walk(ann))
    runtime: list[str] = []
    annotation: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            bucket = annotation if id(node) in in_annotation else runtime
            if node.id not in bucket:
                bucket.append(node.id)
    return runtime, [n for n in annotation if n not in runtime]


class _Collector:
    """The definitions a generated file copies, in dependency order, and the imports they need."""

    def __init__(self) -> None:
        self.order: list[Any] = []  # classes and functions, each after what it uses
        self.constants: dict[str, str] = {}  # name -> literal source
        self.aliases: dict[str, str] = {}  # alias -> the copied name it stands for
        self.imports: dict[str, str] = {}  # name -> import line
        self.names: dict[str, Any] = {}  # top-level name -> the object it defines
        self._visiting: set[int] = set()
        self._annotations: list[tuple[str, dict[str, Any]]] = []

    def _claim(self, name: str, obj: Any) -> None:
        if name in self.names and self.names[name] is not obj:
            raise ExportError(
                f"cannot export: two different definitions are both called {name!r} "
                f"({_where(self.names[name])} and {_where(obj)}); rename one of them"
            )
        self.names[name] = obj

    def add(self, obj: Any) -> None:
        """Copy ``obj`` (a class or function) and, first, what its source refers to."""
        if obj in self.order or id(obj) in self._visiting:
            return
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            raise ExportError(f"cannot export: {_short(obj)} is neither a class nor a function")
        self._visiting.add(id(obj))
        try:
            source = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError) as err:
            raise ExportError(
                f"cannot export: the source of {_where(obj)} cannot be read ({err}); define it in a .py file"
            ) from None
        self._claim(obj.__name__, obj)
        namespace = vars(sys.modules[obj.__module__])
        runtime, annotation = _names(ast.parse(source))
        for name in runtime:
            if name in namespace:  # else a builtin or a local name (argument, loop variable, …)
                self._dependency(name, namespace[name], obj)
        self._annotations += [(name, namespace) for name in annotation if name in namespace]
        self._visiting.discard(id(obj))
        self.order.append(obj)

    def annotation_imports(self) -> None:
        """Import what annotations name from torch or the standard library (``Sequence``,
        ``ClassVar``, …), so the file reads clean to a linter; other annotation names are left as
        they are (``from __future__ import annotations`` never evaluates them)."""
        for name, namespace in self._annotations:
            if name in self.names:
                continue
            value = namespace[name]
            module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if not isinstance(module, str) or not _allowed_module(module):
                continue
            with contextlib.suppress(ExportError):
                self._dependency(name, value, None)

    def _dependency(self, name: str, value: Any, user: Any) -> None:
        if isinstance(value, types.ModuleType):
            if not _allowed_module(value.__name__):
                raise ExportError(
                    f"cannot export: {_where(user)} uses the module {value.__name__!r}; an exported file may "
                    "import only torch and the standard library"
                )
            self._claim(name, value)
            self.imports[name] = _import_line(name, value.__name__)
            return
        module = getattr(value, "__module__", None)
        if (inspect.isclass(value) or callable(value)) and isinstance(module, str) and _allowed_module(module):
            if getattr(importlib.import_module(module), name, None) is value:
                self._claim(name, value)
                self.imports[name] = f"from {module} import {name}"
                return
            owner = getattr(importlib.import_module(module), getattr(value, "__name__", ""), None)
            if owner is value:
                self._claim(name, value)
                self.imports[name] = f"from {module} import {value.__name__} as {name}"
                return
            raise ExportError(f"cannot export: {_where(user)} uses {name!r}, which cannot be imported by name")
        if inspect.isclass(value) or inspect.isfunction(value):
            self.add(value)
            if value.__name__ != name:
                self._claim(name, value)
                self.aliases[name] = value.__name__
            return
        if type(value) in (int, float, bool, str) or (type(value) is tuple and all(
                type(v) in (int, float, bool, str) for v in value)):
            self._claim(name, value)
            if type(value) is tuple:
                self.constants[name] = "(" + "".join(f"{_leaf(v)}, " for v in value).rstrip() + ")"
            else:
                self.constants[name] = _leaf(value)
            return
        raise ExportError(
            f"cannot export: {_where(user)} uses {name!r} ({type(value).__name__}), which is neither a class, "
            "a function, a number nor a module of torch or the standard library"
        )


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


# ------------------------------------------------------------------------------------ rendering


def _render(value: Any, indent: int, column: int | None = None) -> str:
    """A plan value as source: a call, a tuple of ``(name, call)`` layers, or a literal leaf.

    ``indent`` is the indentation of the line the value starts on, ``column`` where on that line
    it starts. A value that does not fit on the line is broken black-style: one argument per line,
    4 spaces in, the closing bracket back at ``indent``.
    """
    column = indent if column is None else column
    flat = _render_flat(value)
    if column + len(flat) + 2 <= _LINE:  # room for a closing bracket and comma
        return flat
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, Call):
        parts = [_render(a, indent + 4) for a in value.args]
        parts += [f"{_kw(k)}={_render(v, indent + 4, indent + 5 + len(k))}" for k, v in value.kwargs]
        return f"{_fn_name(value)}(\n" + "".join(f"{inner}{p},\n" for p in parts) + f"{pad})"
    if isinstance(value, tuple):
        if _is_layer_pair(value):
            head = f"({_leaf(value[0])}, "
            return head + _render(value[1], indent, column + len(head)) + ")"
        parts = [_render(v, indent + 4) for v in value]
        return "[\n" + "".join(f"{inner}{p},\n" for p in parts) + f"{pad}]"
    return flat


def _render_flat(value: Any) -> str:
    if isinstance(value, Call):
        parts = [_render_flat(a) for a in value.args] + [f"{_kw(k)}={_render_flat(v)}" for k, v in value.kwargs]
        return f"{_fn_name(value)}({', '.join(parts)})"
    if isinstance(value, tuple):
        if _is_layer_pair(value):
            return f"({_leaf(value[0])}, {_render_flat(value[1])})"
        return "[" + ", ".join(_render_flat(v) for v in value) + "]"
    return _leaf(value)


def _is_layer_pair(value: tuple[Any, ...]) -> bool:
    return len(value) == 2 and type(value[0]) is str and isinstance(value[1], Call)


def _kw(name: Any) -> str:
    if type(name) is not str or not _IDENT_RE.fullmatch(name) or keyword.iskeyword(name):
        raise ExportError(f"cannot export: internal error: refusing to write keyword {_short(name)}")
    return str(name)


def _fn_name(call: Call) -> str:
    name = getattr(call.fn, "__name__", None)
    if type(name) is not str or not _IDENT_RE.fullmatch(name):
        raise ExportError(f"cannot export: internal error: refusing to write the name {_short(name)}")
    return name


def _docstring(class_name: str, header: Mapping[str, Any] | None) -> str:
    lines = [
        f"{class_name}: a resattn architecture, exported as one self-contained file (needs only torch).",
        "",
    ]
    facts = _header_lines(header)
    if facts:
        lines += [*facts, ""]
    lines += [
        "Usage::",
        "",
        "    model = build_model()",
        '    model.load_state_dict(torch.load("weights.pt"))  # a state_dict trained by resattn',
        "",
        "SPEC is the architecture this file was generated from; the code below is resattn's own, copied",
        "for exactly the classes this architecture uses.",
    ]
    body = "\n".join(line.rstrip() for line in lines)
    if '"""' in body or "\\" in body:  # cannot happen after sanitising; refuse rather than trust it
        raise ExportError("cannot export: internal error: unsafe docstring text")
    return f'"""{body}\n"""\n'


def _net_class(root: Call, class_name: str, spec: NetSpec) -> str:
    """The network class: a subclass of the copied ``Net`` whose ``__init__`` spells out the plan."""
    kwargs = dict(root.kwargs)
    layers = kwargs["layers"]
    lines = [
        f"class {class_name}({Net.__name__}):",
        f'    """{spec.layers and len(spec.layers)} layers (named as in SPEC) between the stem and the head."""',
        "",
        f"    def __init__(self, num_classes: int = {_leaf(spec.num_classes)}):",
        "        super().__init__(",
    ]
    for key, value in root.kwargs:
        if key == "num_classes":
            lines.append("            num_classes=num_classes,")
        elif key == "layers":
            lines.append("            layers=[")
            for pair in layers:
                lines.append(f"                {_render(pair, 16)},")
            lines.append("            ],")
        else:
            lines.append(f"            {_kw(key)}={_render(value, 12, 13 + len(key))},")
    lines.append("        )")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- the file


def export_source(
    spec: NetSpec, *, class_name: str = "ResAttnNet", header: dict[str, Any] | None = None
) -> str:
    """The source of one self-contained Python file that rebuilds ``spec`` with only ``torch``.

    ``header`` facts (study, trial, accuracy, …) go into the module docstring, sanitised.
    Raises :class:`ExportError` for anything that cannot be written safely: an invalid spec
    (re-validated here, whatever built it), a class name that is not a plain identifier, a header
    that is not a mapping of short names to text, numbers or lists of them, or an attention whose
    code cannot be copied (no source file, or a module other than torch and the standard library).
    """
    name = check_class_name(class_name)
    spec = revalidate(spec)
    root = plan(spec)
    if root.fn is not Net:
        raise ExportError("cannot export: internal error: the plan's root is not resattn's Net")
    collector = _Collector()
    for call in root.walk()[1:]:  # what the plan names, in order (the network class itself last)
        collector.add(call.fn)
    for module in root.make().modules():  # what the built model is made of (a cross-check)
        if not type(module).__module__.startswith("torch."):
            collector.add(type(module))
    collector.annotation_imports()
    if name in collector.names:
        raise ExportError(
            f"cannot export: class name {name!r} would shadow a name the generated file uses; choose another"
        )
    imports = _merge_imports(collector.imports.values())
    parts = [
        _docstring(name, header),
        "\nfrom __future__ import annotations\n\n" + _import_block(imports) + "\n",
        f'\n__all__ = ["SPEC", "{name}", "build_model"]\n',
        "\n# The architecture as data, as resattn wrote it (resattn.NetSpec.from_dict(SPEC) reads it back).\n"
        f"SPEC = {_literal(spec.to_dict())}\n",
    ]
    if collector.constants:
        parts.append("\n" + "".join(f"{k} = {v}\n" for k, v in collector.constants.items()))
    for obj in collector.order:
        parts.append("\n\n" + textwrap.dedent(inspect.getsource(obj)).rstrip() + "\n")
    if collector.aliases:
        parts.append("\n\n" + "".join(f"{k} = {v}\n" for k, v in collector.aliases.items()))
    parts.append("\n\n" + _net_class(root, name, spec))
    parts.append(
        "\n\ndef build_model(num_classes: int = "
        f"{_leaf(spec.num_classes)}) -> nn.Module:\n"
        f'    """A freshly initialised {name}; load resattn-trained weights with ``load_state_dict``."""\n'
        f"    return {name}(num_classes)\n"
        '\n\nif __name__ == "__main__":\n'
        "    model = build_model().eval()\n"
        f"    out = model(torch.zeros(1, {_leaf(spec.in_channels)}, 32, 32))\n"
        "    n_params = sum(p.numel() for p in model.parameters())\n"
        '    print(f"{type(model).__name__}: {n_params:,} parameters, output {tuple(out.shape)}")\n'
    )
    source = "".join(parts)
    if "nn" not in collector.imports or "torch" not in collector.imports:
        raise ExportError("cannot export: internal error: the copied code does not import torch and nn")
    _check_imports(source)
    return source


def _import_block(lines: list[str]) -> str:
    """The sorted import lines, a blank line between the standard library and torch."""
    stdlib = [line for line in lines if line.split()[1].split(".")[0] != "torch"]
    torch_lines = [line for line in lines if line not in stdlib]
    return "\n\n".join("\n".join(group) for group in (stdlib, torch_lines) if group)


def _merge_imports(lines: Any) -> list[str]:
    """The import lines, ``from m import a`` and ``from m import b`` merged, sorted isort-style:
    stdlib before torch; within each, ``import x`` before ``from x import y``; then by module."""
    plain: set[str] = set()
    names: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("from "):
            module, _, name = line[5:].partition(" import ")
            names.setdefault(module, set()).add(name)
        else:
            plain.add(line)
    merged = list(plain) + [f"from {m} import {', '.join(sorted(n))}" for m, n in names.items()]

    def order(line: str) -> tuple[int, int, str]:
        module = line.split()[1]
        return (1 if module.split(".")[0] == "torch" else 0, 0 if line.startswith("import ") else 1, module)

    return sorted(merged, key=order)


def _check_imports(source: str) -> None:
    """Defence in depth: the generated module parses and imports nothing but torch and the stdlib."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ExportError(f"cannot export: internal error: generated source does not parse ({err})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            if module != "__future__" and not _allowed_module(module):
                raise ExportError(f"cannot export: internal error: generated source imports {module!r}")


# ---------------------------------------------------------------------------------------- writing


def write_export(
    path: str | os.PathLike[str],
    spec: NetSpec,
    *,
    class_name: str = "ResAttnNet",
    header: dict[str, Any] | None = None,
) -> Path:
    """Generate the file for ``spec`` (see :func:`export_source`) and write it atomically to ``path``.

    The source is generated and compiled before anything touches the file system; parent folders
    are created; the file appears complete or not at all (temporary file + ``os.replace``).
    Returns the path written.
    """
    source = export_source(spec, class_name=class_name, header=header)
    target = Path(path).expanduser()
    try:
        compile(source, str(target), "exec", dont_inherit=True)
    except SyntaxError as err:
        raise ExportError(
            f"cannot export: internal error: generated source does not compile ({err})"
        ) from None
    if target.is_dir():
        raise ExportError(f"cannot write {str(target)!r}: it is a folder; give a file path such as model.py")
    try:
        atomic_write(target, lambda fh: fh.write(source), mode="w")
    except OSError as err:
        raise ExportError(f"cannot write {str(target)!r}: {err.strerror or err}") from None
    return target
