"""Tests for resattn.export.source: one standalone ``.py`` file per architecture."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from resattn import AttentionSpec, BlockSpec, NetSpec, SpecError, build, presets
from resattn.errors import ResattnError
from resattn.export.source import ExportError, export_source, write_export
from resattn.model.spec import KINDS, MAX_CHANNELS

SRC = Path(__file__).resolve().parents[2] / "src"

# ------------------------------------------------------------------------------------ sampled specs

_ATTENTION_NAMES = ("se", "eca", "cbam", "coord", "simam")


def _random_attention(rng: random.Random) -> AttentionSpec:
    name = rng.choice(_ATTENTION_NAMES)
    options: dict[str, int] = {}
    if name in ("se", "cbam", "coord"):
        options["reduction"] = rng.choice((1, 2, 4, 8, 16))
    if name == "cbam":
        options["spatial_kernel"] = rng.choice((3, 7))
    return AttentionSpec(name, **options)


def random_spec(rng: random.Random) -> NetSpec:
    """A small spec (widths 8-16, 1-4 layers) with random kinds, attentions, norms, gates and strides."""
    stem = rng.randint(8, 16)
    width = stem
    layers = []
    for j in range(rng.randint(1, 4)):
        kind = rng.choice(KINDS)
        width = width if rng.random() < 0.4 else rng.randint(8, 16)
        kw: dict[str, Any] = {
            "kind": kind,
            "out_channels": width,
            "stride": rng.choice((1, 1, 2)),
            "norm": rng.choice(("bn", "gn")),
            "name": rng.choice((None, f"{kind[:2]}_{j}", f"blk{j}")),
        }
        if kind != "plain" and kind != "residual":
            kw["attention"] = _random_attention(rng)
        if kind == "pattern2_mix":
            kw |= {"lam": rng.uniform(0.0, 1.0), "lam_learnable": rng.random() < 0.5}
        if kind == "pattern4":
            path = rng.choice(("gated", "direct"))
            kw |= {
                "skip_attention": _random_attention(rng),
                "residual_path": path,
                "gamma_s": rng.uniform(-0.5, 0.5),
                "gamma_learnable": rng.random() < 0.5,
            }
            if path == "gated":
                kw["gamma_r"] = rng.uniform(-0.5, 0.5)
        layers.append(BlockSpec(**kw))
    return NetSpec(
        layers=tuple(layers),
        stem_channels=stem,
        num_classes=rng.randint(2, 10),
        in_channels=rng.randint(1, 3),
        stem_norm=rng.choice(("bn", "gn")),
    )


SPECS = [random_spec(random.Random(7000 + i)) for i in range(30)]
PRESETS = [
    presets.seed_pattern2(), presets.seed_pattern2_mix(), presets.seed_pattern4(), presets.seed_residual()
]


def test_sampled_specs_cover_every_feature() -> None:
    seen: set[str] = set()
    for spec in SPECS:
        width = spec.stem_channels
        seen.add(f"norm:{spec.stem_norm}")
        for layer in spec.layers:
            seen |= {f"kind:{layer.kind}", f"norm:{layer.norm}"}
            seen |= {f"attention:{a.name}" for a in layer.attentions}
            if layer.kind == "pattern4":
                seen |= {f"path:{layer.residual_path}", f"gamma_learnable:{layer.gamma_learnable}"}
            if layer.kind == "pattern2_mix":
                seen.add(f"lam_learnable:{layer.lam_learnable}")
            if layer.kind != "plain":
                changes = layer.stride != 1 or layer.out_channels != width
                seen.add("skip:projected" if changes else "skip:identity")
                if layer.stride == 2 and layer.out_channels != width:
                    seen.add("stride2+width")
            width = layer.out_channels
    wanted = (
        {f"kind:{k}" for k in KINDS}
        | {f"attention:{a}" for a in _ATTENTION_NAMES}
        | {"norm:bn", "norm:gn", "path:gated", "path:direct"}
        | {"skip:projected", "skip:identity", "stride2+width"}
        | {f"{g}:{b}" for g in ("gamma_learnable", "lam_learnable") for b in (True, False)}
    )
    assert wanted <= seen, sorted(wanted - seen)


# ------------------------------------------------------------------------- equivalence, without resattn

_RUNNER = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys
    src = sys.argv[1]
    # Hide the editable install of resattn: its path entry and any finder it installed.
    sys.path[:] = [p for p in sys.path if src not in p]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()
                        and "resattn" not in repr(f).lower()]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    assert importlib.util.find_spec("resattn") is None, "resattn is still importable"
    try:
        import resattn  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("import resattn worked")

    import torch
    torch.set_num_threads(1)
    report = {}
    for stem in sys.argv[2:]:
        spec = importlib.util.spec_from_file_location(stem, stem + ".py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        data = torch.load(stem + ".pt", weights_only=True)
        model = module.build_model()
        model.load_state_dict(data["state"], strict=True)
        model.eval()
        with torch.no_grad():
            out = model(data["x"])
        torch.save(out, stem + ".out.pt")
        report[stem] = {
            "params": {n: list(p.shape) for n, p in model.named_parameters()},
            "buffers": {n: list(b.shape) for n, b in model.named_buffers()},
            "classes": module.build_model(3).head.out_features,
        }
    assert not [m for m in sys.modules if m == "resattn" or m.startswith("resattn.")]
    print(json.dumps(report))
    """
)


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random weights, BN running statistics, γ and λ, so every value matters for the output."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.ndim == 0:  # γ / λ, parameters or buffers
                t.copy_(torch.rand((), generator=gen) * 0.8 + 0.1)
            else:
                t.add_(0.2 * torch.randn(t.shape, generator=gen))


def test_exported_models_match_resattn_in_a_process_without_resattn(tmp_path: Path, one_thread: None) -> None:
    gen = torch.Generator().manual_seed(0)
    specs = [*SPECS, *PRESETS]
    expected: dict[str, tuple[torch.Tensor, dict[str, Any]]] = {}
    for i, spec in enumerate(specs):
        stem = f"model_{i}"
        write_export(tmp_path / f"{stem}.py", spec, class_name=f"Net{i}")
        model = build(spec)
        _perturb(model, gen)
        model.eval()
        size = random.Random(i).choice((8, 12, 16))
        x = torch.randn(2, spec.in_channels, size, size, generator=gen)
        with torch.no_grad():
            out = model(x)
        torch.save({"state": model.state_dict(), "x": x}, tmp_path / f"{stem}.pt")
        split = {
            "params": {n: list(p.shape) for n, p in model.named_parameters()},
            "buffers": {n: list(b.shape) for n, b in model.named_buffers()},
            "classes": 3,
        }
        expected[stem] = (out, split)
    (tmp_path / "runner.py").write_text(_RUNNER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    proc = subprocess.run(
        [sys.executable, "-I", "runner.py", str(SRC), *expected],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for stem, (out, split) in expected.items():
        assert report[stem] == split, stem  # same keys, shapes and parameter/buffer split
        got = torch.load(tmp_path / f"{stem}.out.pt", weights_only=True)
        assert torch.equal(got, out), stem


# ---------------------------------------------------------------------------------- the source itself


def _tree(source: str) -> ast.Module:
    return ast.parse(source)


def _spec_literal(source: str) -> Any:
    for node in _tree(source).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["SPEC"]:
            return ast.literal_eval(node.value)
    raise AssertionError("no SPEC literal")


def _imports(source: str) -> set[str]:
    out = set()
    for node in ast.walk(_tree(source)):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out.add((node.module or "").split(".")[0])
    return out


@pytest.mark.parametrize("spec", SPECS + PRESETS, ids=lambda s: "-".join(layer.kind for layer in s.layers))
def test_source_imports_only_torch_and_stdlib_and_holds_the_spec(spec: NetSpec) -> None:
    source = export_source(spec)
    assert source == export_source(spec)  # deterministic
    for module in _imports(source):
        assert module == "torch" or module in sys.stdlib_module_names, module
    assert "resattn import" not in source and "import resattn" not in source
    literal = _spec_literal(source)
    assert literal == spec.to_dict()
    assert NetSpec.from_dict(literal) == spec
    compile(source, "<export>", "exec")


def _p4_se() -> NetSpec:
    se = AttentionSpec("se", reduction=4)
    return NetSpec(
        stem_channels=8,
        layers=(
            BlockSpec("pattern4", 8, skip_attention=se, attention=se, name="a"),
            BlockSpec("pattern4", 16, 2, skip_attention=se, attention=se, gamma_learnable=False, name="b"),
        ),
    )


def _defined(source: str) -> set[str]:
    """The top-level classes and functions a generated file defines."""
    import ast

    return {n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef | ast.FunctionDef)}


def test_only_the_classes_the_architecture_uses() -> None:
    p4 = _defined(export_source(_p4_se()))
    assert {"NearIdentityGate", "SqueezeExcite", "make_skip", "FusionBlock", "Net", "PlainLayer"} <= p4
    assert not p4 & {"CBAM", "ECA", "CoordAttention", "SimAM", "MaskMix", "ApplyMask", "eca_kernel_size"}

    cbam = AttentionSpec("cbam", reduction=4, spatial_kernel=3)
    p2 = _defined(export_source(NetSpec(stem_channels=8, layers=(BlockSpec("pattern2", 8, attention=cbam),))))
    assert {"CBAM", "ChannelMask", "SpatialMask", "ApplyMask"} <= p2
    assert not p2 & {"NearIdentityGate", "SqueezeExcite", "MaskMix", "CoordAttention", "SimAM", "ECA"}

    eca = _defined(export_source(NetSpec(stem_channels=8, layers=(BlockSpec("pattern1", 8, attention="eca"),))))
    assert {"ECA", "eca_kernel_size", "ApplyMask"} <= eca  # a helper function found through ECA's source

    plain = _defined(export_source(
        NetSpec(stem_channels=8, layers=(BlockSpec("plain", 8, norm="gn"),), stem_norm="gn")
    ))
    assert plain == {"Net", "PlainLayer", "make_norm", "build_model", "ResAttnNet"}


def test_generated_file_is_lint_clean(tmp_path: Path) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    for i, spec in enumerate([*SPECS[:8], presets.seed_pattern4(), presets.seed_pattern2_mix()]):
        write_export(tmp_path / f"m{i}.py", spec, header={"study": "s", "trial": i, "val_accuracy": 0.5})
    proc = subprocess.run(
        [ruff, "check", "--isolated", "--no-cache", "--line-length", "110", "--select", "E,F,W,I,B,UP,SIM",
         str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_header_is_sanitised_into_the_docstring(tmp_path: Path) -> None:
    evil = 'x"""\nimport os\nos.system("echo pwned")\n"""\\'
    header = {"study": evil, "trial": 3, "val_accuracy": 0.8125, "params": 12345, "placement": [evil, "a=b"],
              "flops": float("nan"), "note": None}
    path = write_export(tmp_path / "m.py", _p4_se(), header=header)
    source = path.read_text(encoding="utf-8")
    tree = _tree(source)
    doc = ast.get_docstring(tree)
    assert doc is not None and "params:" in doc and "12,345" in doc and "0.8125" in doc
    assert source.count('"""') == sum(s.count('"""') for s in (export_source(_p4_se()),))
    assert "\\" not in doc and '"' not in doc.split("Usage::")[0]
    assert "os" not in _imports(source)
    assert not any(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) for n in tree.body
    ), "header text became code"


@pytest.mark.parametrize("header", [{"bad\nkey": 1}, {"": 1}, {"k": object()}, {"k": [[1]]}, {1: 2}, ["x"]])
def test_bad_header_is_refused(tmp_path: Path, header: Any) -> None:
    out = tmp_path / "m.py"
    with pytest.raises(ExportError):
        write_export(out, _p4_se(), header=header)
    assert not out.exists()


# ------------------------------------------------------------------------------ refusing crafted input


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize(
    "data",
    [
        {"layers": [{"kind": "pattern1", "out_channels": 8, "attention": "se; import os"}]},
        {"layers": [{"kind": "plain", "out_channels": 8, "name": "x\nimport os"}]},
        {"layers": [{"kind": "plain", "out_channels": 8, "name": "training"}]},
        {"layers": [{"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam": float("nan")}]},
        {"layers": [{"kind": "pattern4", "out_channels": 8, "attention": "se", "skip_attention": "se",
                     "gamma_s": 1e400}]},
        {"layers": [{"kind": "plain", "out_channels": 10**9}]},
        {"layers": [{"kind": "plain; import os", "out_channels": 8}]},
        {"layers": [{"kind": "plain", "out_channels": 8, "norm": "bn'); import os; ('"}]},
        {"layers": [{"kind": "plain", "out_channels": 8}], "stem_norm": "bn\nimport os"},
    ],
)
def test_crafted_dicts_are_refused_and_nothing_is_written(tmp_path: Path, data: dict[str, Any]) -> None:
    out = tmp_path / "sub" / "m.py"
    with pytest.raises((SpecError, ExportError)) as info:
        write_export(out, NetSpec.from_dict(data))
    _one_line(info.value)
    assert not out.exists() and not out.parent.exists()


def test_crafted_json_is_refused(tmp_path: Path) -> None:
    layer = '{"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam": %s}'
    for value in ("NaN", "1e400", "-Infinity"):
        with pytest.raises(SpecError):
            NetSpec.from_json('{"layers": [%s]}' % (layer % value))


class _EvilInt(int):
    def __repr__(self) -> str:
        return "__import__('os').system('echo pwned')"

    __str__ = __repr__


class _EvilStr(str):
    pass


def _forge(cls: type, base: Any, **overrides: Any) -> Any:
    """A frozen spec object carrying ``overrides``, made without running its validation."""
    obj = object.__new__(cls)
    for f in dataclasses.fields(cls):
        object.__setattr__(obj, f.name, overrides.get(f.name, getattr(base, f.name)))
    return obj


_BASE_BLOCK = BlockSpec("pattern4", 8, attention=AttentionSpec("se", reduction=4),
                        skip_attention=AttentionSpec("se", reduction=4), name="p4")
_BASE_NET = NetSpec(layers=(_BASE_BLOCK,), stem_channels=8)


def _forged_block(**overrides: Any) -> NetSpec:
    return _forge(NetSpec, _BASE_NET, layers=(_forge(BlockSpec, _BASE_BLOCK, **overrides),))


def _forged_attention(name: Any = "cbam", **options: Any) -> NetSpec:
    values = tuple({"reduction": 16, "spatial_kernel": 7, **options}.items())
    return _forged_block(attention=_forge(AttentionSpec, AttentionSpec("cbam"), name=name, values=values))


FORGED = {
    "attention name": (_forged_attention(name="se; import os"), "attention.name"),
    "attention name subclass": (_forged_attention(name=_EvilStr("cbam")), "attention.name"),
    "reduction zero": (_forged_attention(reduction=0), "reduction"),
    "reduction huge": (_forged_attention(reduction=10**6), "reduction"),
    "reduction float": (_forged_attention(reduction=2.5), "reduction"),
    "spatial kernel": (_forged_attention(spatial_kernel=5), "spatial_kernel"),
    "option not taken": (_forged_block(attention=_forge(AttentionSpec, AttentionSpec("eca"),
                                                        values=(("reduction", 4),))), "reduction"),
    "layer name newline": (_forged_block(name="x\nimport os"), "name"),
    "layer name quote": (_forged_block(name="x'); import os; ('"), "name"),
    "layer name keyword": (_forged_block(name="class"), "reserved"),
    "layer name module attr": (_forged_block(name="forward"), "reserved"),
    "layer name missing": (_forged_block(name=None), "name"),
    "layer name subclass": (_forged_block(name=_EvilStr("p4")), "name"),
    "gamma nan": (_forged_block(gamma_s=float("nan")), "gamma_s"),
    "gamma inf": (_forged_block(gamma_r=float("inf")), "gamma_r"),
    "gamma text": (_forged_block(gamma_r="0.1"), "gamma_r"),
    "learnable not bool": (_forged_block(gamma_learnable=1), "gamma_learnable"),
    "huge width": (_forged_block(out_channels=10**9), "out_channels"),
    "width bool": (_forged_block(out_channels=True), "out_channels"),
    "width int subclass": (_forged_block(out_channels=_EvilInt(8)), "out_channels"),
    "width over max": (_forged_block(out_channels=MAX_CHANNELS + 1), "out_channels"),
    "stride": (_forged_block(stride=3), "stride"),
    "norm": (_forged_block(norm="bn\nimport os"), "norm"),
    "kind": (_forged_block(kind="pattern4; import os"), "kind"),
    "residual path": (_forged_block(residual_path="gated\nimport os"), "residual_path"),
    "unused value": (
        _forge(NetSpec, _BASE_NET, layers=(_forge(BlockSpec, BlockSpec("plain", 8, name="x"), lam=0.5),)),
        "lam",
    ),
    "missing attention": (_forged_block(attention=None), "attention"),
    "stem width": (_forge(NetSpec, _BASE_NET, stem_channels=10**9), "stem_channels"),
    "classes": (_forge(NetSpec, _BASE_NET, num_classes=0), "num_classes"),
    "in channels": (_forge(NetSpec, _BASE_NET, in_channels=-1), "in_channels"),
    "stem norm": (_forge(NetSpec, _BASE_NET, stem_norm="gn; import os"), "stem_norm"),
    "layers text": (_forge(NetSpec, _BASE_NET, layers="import os"), "layers"),
    "layers empty": (_forge(NetSpec, _BASE_NET, layers=()), "layers"),
    "duplicate names": (_forge(NetSpec, _BASE_NET, layers=(_BASE_BLOCK, _BASE_BLOCK)), "duplicate"),
    "format": (_forge(NetSpec, _BASE_NET, format="x\nimport os"), "format"),
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_specs_bypassing_validation_are_refused(tmp_path: Path, case: str) -> None:
    spec, field = FORGED[case]
    out = tmp_path / "m.py"
    with pytest.raises(ExportError, match="cannot export") as info:
        write_export(out, spec)
    assert field in _one_line(info.value)
    assert isinstance(info.value, ResattnError)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_not_a_spec_is_refused() -> None:
    with pytest.raises(ExportError, match="NetSpec"):
        export_source(_BASE_NET.to_dict())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "class_name", ["Net; import os", "1abc", "class", "match", "", "Net\n", "nn", "torch", "FusionBlock",
                   "SPEC", "build_model", "int", "A" * 65, 7]
)
def test_bad_class_names_are_refused(tmp_path: Path, class_name: Any) -> None:
    out = tmp_path / "m.py"
    with pytest.raises(ExportError, match="class name") as info:
        write_export(out, _p4_se(), class_name=class_name)
    _one_line(info.value)
    assert not out.exists()


# -------------------------------------------------------------------------------------------- writing


def test_write_export_creates_folders_atomically(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "model.py"
    assert write_export(out, presets.seed_pattern4(), class_name="Pattern4Net") == out
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind
    source = out.read_text(encoding="utf-8")
    assert "class Pattern4Net(Net)" in source and "return Pattern4Net(num_classes)" in source
    write_export(out, presets.seed_residual())  # overwrites in place
    assert "class ResAttnNet" in out.read_text(encoding="utf-8")
    with pytest.raises(ExportError, match="folder"):
        write_export(tmp_path / "a", presets.seed_residual())
