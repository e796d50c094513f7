"""Tests for resattn.model.spec: validation with field paths, defaults, equality, hashing, JSON round trips."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from typing import Any

import pytest

import resattn
from resattn import ATTENTIONS, KINDS, NORMS, AttentionSpec, BlockSpec, NetSpec, SpecError
from resattn.model.attention import attention_options

ATT_NAMES = sorted(ATTENTIONS)


# --------------------------------------------------------------------------------------------
# A seeded generator of valid specs (also used by test_build and test_stats)
# --------------------------------------------------------------------------------------------


def random_attention(rng: random.Random) -> AttentionSpec | str:
    name = rng.choice(ATT_NAMES)
    opts = attention_options(name)
    kw: dict[str, Any] = {}
    if "reduction" in opts and rng.random() < 0.6:
        kw["reduction"] = rng.choice([1, 2, 4, 8, 16, 32, rng.randint(1, 1024)])
    if "spatial_kernel" in opts and rng.random() < 0.6:
        kw["spatial_kernel"] = rng.choice([3, 7])
    if not kw and rng.random() < 0.3:
        return name  # a bare name is accepted and coerced
    return AttentionSpec(name, **kw)


def _maybe(rng: random.Random, value: Any, p: float = 0.5) -> Any:
    return value if rng.random() < p else None


def random_block(rng: random.Random, max_channels: int = 512, name: str | None = None) -> BlockSpec:
    kind = rng.choice(KINDS)
    kw: dict[str, Any] = {
        "kind": kind,
        "out_channels": rng.randint(1, max_channels),
        "stride": rng.choice([1, 2]),
        "norm": rng.choice(NORMS),
        "name": name,
    }
    if kind in ("pattern1", "pattern2", "pattern2_mix", "pattern4"):
        kw["attention"] = random_attention(rng)
    if kind == "pattern2_mix":
        kw["lam"] = _maybe(rng, rng.choice([0, 1, 0.1, rng.uniform(-1, 2)]))
        kw["lam_learnable"] = _maybe(rng, rng.random() < 0.5)
    if kind == "pattern4":
        kw["skip_attention"] = random_attention(rng)
        path = _maybe(rng, rng.choice(["gated", "direct"]))
        kw["residual_path"] = path
        kw["gamma_s"] = _maybe(rng, rng.choice([0.0, 0.05, rng.uniform(-1, 1)]))
        if path in (None, "gated"):
            kw["gamma_r"] = _maybe(rng, rng.choice([0.1, 0, rng.uniform(-1, 1)]))
        kw["gamma_learnable"] = _maybe(rng, rng.random() < 0.5)
    return BlockSpec(**kw)


def random_netspec(rng: random.Random, max_channels: int = 512, max_layers: int = 6) -> NetSpec:
    n = rng.randint(1, max_layers)
    names = rng.sample([f"l{i}" for i in range(50)] + ["p2_1", "p4_2", "block1", "_x", "a" * 64], n)
    layers = []
    for i in range(n):
        name = names[i] if rng.random() < 0.5 else None
        block = random_block(rng, max_channels, name)
        layers.append(block.to_dict() if rng.random() < 0.2 else block)  # dict layers are coerced
    return NetSpec(
        layers=tuple(layers) if rng.random() < 0.5 else layers,
        stem_channels=rng.randint(1, max_channels),
        num_classes=rng.randint(1, 1000),
        in_channels=rng.randint(1, 4),
        stem_norm=rng.choice(NORMS),
    )


def random_specs(count: int, seed: int = 1234, **kw: Any) -> list[NetSpec]:
    rng = random.Random(seed)
    return [random_netspec(rng, **kw) for _ in range(count)]


RANDOM_SPECS = random_specs(250)


def test_generator_covers_the_space() -> None:
    blocks = [b for s in RANDOM_SPECS for b in s.layers]
    assert {b.kind for b in blocks} == set(KINDS)
    assert {a.name for b in blocks for a in b.attentions} == set(ATTENTIONS)
    assert {b.norm for b in blocks} == set(NORMS)
    assert {b.stride for b in blocks} == {1, 2}
    assert {b.residual_path for b in blocks if b.kind == "pattern4"} == {"gated", "direct"}
    assert {b.lam_learnable for b in blocks if b.kind == "pattern2_mix"} == {True, False}
    assert {b.gamma_learnable for b in blocks if b.kind == "pattern4"} == {True, False}
    assert {a.get("spatial_kernel") for b in blocks for a in b.attentions if a.name == "cbam"} == {3, 7}
    assert len({a.get("reduction") for b in blocks for a in b.attentions}) > 8


# --------------------------------------------------------------------------------------------
# Round trips, equality, hashing
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(RANDOM_SPECS)))
def test_json_round_trip(index: int) -> None:
    spec = RANDOM_SPECS[index]
    text = spec.to_json()
    again = NetSpec.from_json(text)
    assert again == spec
    assert hash(again) == hash(spec)
    assert again.to_json() == text
    assert NetSpec.from_dict(json.loads(text)) == spec
    assert NetSpec.from_json(spec.to_json(indent=2)) == spec
    assert NetSpec.from_json(text.encode()) == spec


def test_round_trip_is_not_trivial() -> None:
    """Specs that differ in one value do not compare equal, and their JSON differs."""
    base = RANDOM_SPECS[0]
    changed = dataclasses.replace(base, num_classes=base.num_classes + 1)
    assert changed != base and changed.to_json() != base.to_json()
    layer = base.layers[0]
    other = dataclasses.replace(
        base, layers=(dataclasses.replace(layer, out_channels=layer.out_channels % 512 + 1), *base.layers[1:])
    )
    assert other != base
    assert NetSpec.from_json(other.to_json()) != base


def test_to_json_is_plain_json() -> None:
    spec = resattn.presets.seed_pattern4()
    data = json.loads(spec.to_json())
    assert data["format"] == "resattn.netspec/1"
    assert [layer["name"] for layer in data["layers"]] == ["block1", "p4_1", "p4_2", "block2"]
    p4 = data["layers"][1]
    assert p4 == {
        "kind": "pattern4",
        "out_channels": 64,
        "stride": 1,
        "norm": "bn",
        "attention": {"name": "se", "reduction": 16},
        "skip_attention": {"name": "se", "reduction": 16},
        "residual_path": "gated",
        "gamma_s": 0.0,
        "gamma_r": 0.1,
        "gamma_learnable": True,
        "name": "p4_1",
    }
    plain = data["layers"][0]
    assert set(plain) == {"kind", "out_channels", "stride", "norm", "name"}  # unused fields omitted


def test_specs_are_hashable_and_frozen() -> None:
    specs = set(RANDOM_SPECS) | {NetSpec.from_json(s.to_json()) for s in RANDOM_SPECS}
    assert len(specs) == len(set(RANDOM_SPECS))
    block = BlockSpec("pattern2", 8, attention="se")
    assert len({block, BlockSpec("pattern2", 8, attention=AttentionSpec("se", reduction=16))}) == 1
    assert len({block, BlockSpec("pattern2", 8, attention="eca")}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        block.out_channels = 16  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RANDOM_SPECS[0].num_classes = 3  # type: ignore[misc]
    assert isinstance(RANDOM_SPECS[0].layers, tuple)
    assert {AttentionSpec("cbam"): 1}[AttentionSpec("cbam", 16, 7)] == 1


def test_list_layers_become_a_tuple() -> None:
    spec = NetSpec(layers=[BlockSpec("plain", 8), {"kind": "residual", "out_channels": 8}])
    assert isinstance(spec.layers, tuple)
    assert all(isinstance(layer, BlockSpec) for layer in spec.layers)
    assert spec == NetSpec(layers=(BlockSpec("plain", 8), BlockSpec("residual", 8)))
    hash(spec)


# --------------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------------


def test_defaults_pattern2_mix() -> None:
    b = BlockSpec("pattern2_mix", 8, attention="cbam")
    assert b.lam == 0.1 and isinstance(b.lam, float)
    assert b.lam_learnable is True
    assert b.attention == AttentionSpec("cbam", reduction=16, spatial_kernel=7)
    assert b.attention.reduction == 16 and b.attention.spatial_kernel == 7
    assert b.gamma_s is None and b.gamma_r is None and b.gamma_learnable is None
    assert b.residual_path is None and b.skip_attention is None
    assert b == BlockSpec(
        "pattern2_mix", 8, 1, "bn", attention=AttentionSpec("cbam", 16, 7), lam=0.1, lam_learnable=True
    )
    assert b != BlockSpec("pattern2_mix", 8, attention="cbam", lam=0.2)
    assert b != BlockSpec("pattern2_mix", 8, attention="cbam", lam_learnable=False)


def test_defaults_pattern4() -> None:
    b = BlockSpec("pattern4", 8, attention="cbam", skip_attention="se")
    assert b.residual_path == "gated"
    assert b.gamma_s == 0.0 and isinstance(b.gamma_s, float)
    assert b.gamma_r == 0.1
    assert b.gamma_learnable is True
    assert b.lam is None and b.lam_learnable is None
    d = BlockSpec("pattern4", 8, attention="cbam", skip_attention="se", residual_path="direct")
    assert d.gamma_r is None and d.gamma_s == 0.0 and d.gamma_learnable is True
    assert b.attentions == (AttentionSpec("se"), AttentionSpec("cbam"))  # skip path first


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("se", {"reduction": 16}),
        ("cbam", {"reduction": 16, "spatial_kernel": 7}),
        ("coord", {"reduction": 32}),
        ("eca", {}),
        ("simam", {}),
    ],
)
def test_attention_defaults(name: str, expected: dict) -> None:
    a = AttentionSpec(name)
    assert a.options() == expected
    assert a.to_dict() == {"name": name, **expected}
    assert AttentionSpec.from_dict(name) == a
    assert AttentionSpec.from_dict({"name": name}) == a


def test_defaults_unused_fields_stay_none() -> None:
    for kind in ("plain", "residual"):
        b = BlockSpec(kind, 8)
        assert b.attention is None and b.lam is None and b.gamma_s is None and b.residual_path is None
        assert b.attentions == ()
    b = BlockSpec("pattern1", 8, attention="eca")
    assert (b.lam, b.lam_learnable, b.gamma_s, b.gamma_r, b.gamma_learnable, b.skip_attention) == (None,) * 6


def test_numbers_are_normalised() -> None:
    assert BlockSpec("pattern2_mix", 8, attention="se", lam=1) == BlockSpec(
        "pattern2_mix", 8, attention="se", lam=1.0
    )
    assert isinstance(BlockSpec("pattern2_mix", 8, attention="se", lam=1).lam, float)
    assert isinstance(BlockSpec("pattern4", 8, attention="se", skip_attention="se", gamma_s=0).gamma_s, float)


def test_layer_names_default_to_position() -> None:
    spec = NetSpec(layers=(BlockSpec("plain", 8), BlockSpec("plain", 8, name="mid"), BlockSpec("plain", 8)))
    assert spec.names() == ("layer0", "mid", "layer2")
    assert spec.out_channels == 8


def test_short_labels() -> None:
    assert BlockSpec("residual", 8).short() == "residual"
    assert (
        BlockSpec("pattern2_mix", 8, attention="cbam", lam=0.2).short() == "pattern2_mix[cbam/r16/k7 λ=0.2]"
    )
    p4 = BlockSpec("pattern4", 8, attention="cbam", skip_attention="se")
    assert p4.short() == "pattern4[se/r16|cbam/r16/k7 γs=0 γr=0.1]"
    p4d = BlockSpec("pattern4", 8, attention="eca", skip_attention="se", residual_path="direct")
    assert p4d.short() == "pattern4[se/r16|eca γs=0 direct]"


# --------------------------------------------------------------------------------------------
# Invalid specs: each raises SpecError naming the field
# --------------------------------------------------------------------------------------------


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)
    assert resattn.SpecError is SpecError


def _p4(**kw: Any) -> dict[str, Any]:
    return {"kind": "pattern4", "out_channels": 8, "attention": "se", "skip_attention": "se", **kw}


def _p2(**kw: Any) -> dict[str, Any]:
    return {"kind": "pattern2", "out_channels": 8, "attention": "se", **kw}


# (layer as a dict, expected field, substrings expected in the message)
BAD_LAYERS: list[tuple[dict[str, Any], str, tuple[str, ...]]] = [
    ({"kind": "nope", "out_channels": 8}, "kind", ("nope", *KINDS)),
    ({"kind": 3, "out_channels": 8}, "kind", KINDS),
    ({"out_channels": 8}, "kind", ("required", *KINDS)),
    ({"kind": "plain"}, "out_channels", ("required",)),
    ({"kind": "plain", "out_channels": 0}, "out_channels", ("0",)),
    ({"kind": "plain", "out_channels": -1}, "out_channels", ("-1",)),
    ({"kind": "plain", "out_channels": 10**9}, "out_channels", ("1000000000", "8192")),
    ({"kind": "plain", "out_channels": 8.0}, "out_channels", ("integer",)),
    ({"kind": "plain", "out_channels": "8"}, "out_channels", ("integer",)),
    ({"kind": "plain", "out_channels": True}, "out_channels", ("integer",)),
    ({"kind": "plain", "out_channels": 8, "stride": 3}, "stride", ("1 or 2", "3")),
    ({"kind": "plain", "out_channels": 8, "stride": 0}, "stride", ("1 or 2",)),
    ({"kind": "plain", "out_channels": 8, "stride": True}, "stride", ("1 or 2",)),
    ({"kind": "plain", "out_channels": 8, "stride": 1.0}, "stride", ("1 or 2",)),
    ({"kind": "plain", "out_channels": 8, "stride": "2"}, "stride", ("1 or 2",)),
    ({"kind": "plain", "out_channels": 8, "norm": "ln"}, "norm", ("ln", "bn", "gn")),
    ({"kind": "pattern1", "out_channels": 8}, "attention", ("needs an attention", *ATT_NAMES)),
    ({"kind": "pattern2_mix", "out_channels": 8}, "attention", ATT_NAMES),
    ({"kind": "pattern4", "out_channels": 8, "attention": "se"}, "skip_attention", ATT_NAMES),
    (_p2(attention="nope"), "attention.name", ("nope", *ATT_NAMES)),
    (_p2(attention={"name": "nope"}), "attention.name", ATT_NAMES),
    (_p2(attention={"reduction": 4}), "attention.name", ("required",)),
    (_p2(attention=5), "attention", ("attention name or a table",)),
    (_p2(attention={"name": "se", "bogus": 1}), "attention.bogus", ("does not take", "reduction")),
    (_p2(attention={"name": "eca", "reduction": 4}), "attention.reduction", ("eca", "no options")),
    (_p2(attention={"name": "simam", "spatial_kernel": 3}), "attention.spatial_kernel", ("simam",)),
    (_p2(attention={"name": "se", "spatial_kernel": 7}), "attention.spatial_kernel", ("reduction",)),
    (_p2(attention={"name": "coord", "spatial_kernel": 7}), "attention.spatial_kernel", ("coord",)),
    (_p2(attention={"name": "cbam", "spatial_kernel": 5}), "attention.spatial_kernel", ("3, 7", "5")),
    (_p2(attention={"name": "cbam", "spatial_kernel": 7.0}), "attention.spatial_kernel", ("3, 7",)),
    (_p2(attention={"name": "cbam", "spatial_kernel": True}), "attention.spatial_kernel", ("3, 7",)),
    (_p2(attention={"name": "se", "reduction": 0}), "attention.reduction", ("from 1 to 1024",)),
    (_p2(attention={"name": "se", "reduction": 5000}), "attention.reduction", ("from 1 to 1024",)),
    (_p2(attention={"name": "se", "reduction": 2.0}), "attention.reduction", ("integer",)),
    (_p4(skip_attention="nope"), "skip_attention.name", ATT_NAMES),
    (
        {"kind": "pattern1", "out_channels": 8, "attention": "se", "lam": 0.1},
        "lam",
        ("pattern1", "pattern2_mix"),
    ),
    ({"kind": "pattern1", "out_channels": 8, "attention": "se", "lam_learnable": True}, "lam_learnable", ()),
    ({"kind": "residual", "out_channels": 8, "attention": "se"}, "attention", ("residual",)),
    ({"kind": "plain", "out_channels": 8, "attention": "cbam"}, "attention", ("plain",)),
    ({"kind": "plain", "out_channels": 8, "gamma_s": 0.0}, "gamma_s", ("plain", "pattern4")),
    (_p2(skip_attention="se"), "skip_attention", ("pattern2",)),
    (_p2(residual_path="gated"), "residual_path", ("pattern2",)),
    (_p2(gamma_learnable=True), "gamma_learnable", ()),
    ({"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "gamma_r": 0.1}, "gamma_r", ()),
    (_p4(lam=0.1), "lam", ("pattern4",)),
    (_p4(residual_path="direct", gamma_r=0.1), "gamma_r", ("gated",)),
    (_p4(residual_path="sideways"), "residual_path", ("sideways", "gated", "direct")),
    (_p4(gamma_s=math.nan), "gamma_s", ("finite",)),
    (_p4(gamma_s=math.inf), "gamma_s", ("finite",)),
    (_p4(gamma_r=-math.inf), "gamma_r", ("finite",)),
    (_p4(gamma_r="0.1"), "gamma_r", ("number",)),
    (_p4(gamma_s=True), "gamma_s", ("number",)),
    (_p4(gamma_learnable=1), "gamma_learnable", ("true or false",)),
    (_p4(gamma_learnable="yes"), "gamma_learnable", ("true or false",)),
    ({"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam": math.nan}, "lam", ("finite",)),
    ({"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam": math.inf}, "lam", ("finite",)),
    (
        {"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam_learnable": "no"},
        "lam_learnable",
        (),
    ),
    ({"kind": "plain", "out_channels": 8, "name": "se; import os"}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": "Upper"}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": "1abc"}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": ""}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": "a" * 65}, "name", ("64",)),
    ({"kind": "plain", "out_channels": 8, "name": "abc\n"}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": "a.b"}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": "a\u00e9"}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": 7}, "name", ("identifier",)),
    ({"kind": "plain", "out_channels": 8, "name": "forward"}, "name", ("reserved",)),
    ({"kind": "plain", "out_channels": 8, "name": "training"}, "name", ("reserved",)),
    ({"kind": "plain", "out_channels": 8, "bogus": 1}, "bogus", ("unknown key", "kind", "out_channels")),
]


def _id(case: tuple[dict[str, Any], str, tuple[str, ...]]) -> str:
    return (
        case[1] + ":" + ",".join(f"{k}={v!r}"[:30] for k, v in case[0].items() if k not in ("out_channels",))
    )


@pytest.mark.parametrize(("layer", "field", "words"), BAD_LAYERS, ids=[_id(c) for c in BAD_LAYERS])
def test_bad_layer_directly(layer: dict[str, Any], field: str, words: tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as info:
        BlockSpec.from_dict(layer)
    err = info.value
    assert err.field == field
    msg = str(err)
    assert msg.startswith(f"{field}: ")
    for word in words:
        assert word in msg, (word, msg)


@pytest.mark.parametrize(("layer", "field", "words"), BAD_LAYERS, ids=[_id(c) for c in BAD_LAYERS])
def test_bad_layer_in_json_carries_its_path(
    layer: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    good = {"kind": "plain", "out_channels": 8}
    data = {"layers": [good, layer]}
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        pytest.skip("not expressible in JSON")
    if "NaN" in text or "Infinity" in text:
        # JSON text with NaN/Infinity is rejected before any field is looked at.
        with pytest.raises(SpecError, match="not allowed"):
            NetSpec.from_json(text)
        return
    with pytest.raises(SpecError) as info:
        NetSpec.from_json(text)
    assert info.value.field == f"layers[1].{field}"
    assert str(info.value).startswith(f"layers[1].{field}: ")
    # Also through from_dict and the constructor directly with dict layers.
    with pytest.raises(SpecError) as info2:
        NetSpec(layers=(good, layer))
    assert info2.value.field == f"layers[1].{field}"


def test_nested_attention_error_path() -> None:
    text = json.dumps(
        {
            "layers": [
                {"kind": "plain", "out_channels": 8},
                {
                    "kind": "pattern4",
                    "out_channels": 8,
                    "skip_attention": "se",
                    "attention": {"name": "bogus"},
                },
            ]
        }
    )
    with pytest.raises(SpecError) as info:
        NetSpec.from_json(text)
    assert info.value.field == "layers[1].attention.name"
    msg = str(info.value)
    assert msg.startswith("layers[1].attention.name: ")
    assert "bogus" in msg
    for name in ATT_NAMES:
        assert name in msg


BAD_NETS: list[tuple[dict[str, Any], str]] = [
    ({"layers": []}, "layers"),
    ({}, "layers"),
    ({"layers": "plain"}, "layers"),
    ({"layers": {"kind": "plain"}}, "layers"),
    ({"layers": [5]}, "layers[0]"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "foo": 1}, "foo"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "stem_channels": 0}, "stem_channels"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "stem_channels": 9000}, "stem_channels"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "num_classes": 0}, "num_classes"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "num_classes": 2.0}, "num_classes"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "in_channels": 65}, "in_channels"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "stem_norm": "ln"}, "stem_norm"),
    ({"layers": [{"kind": "plain", "out_channels": 8}], "format": "resattn.netspec/2"}, "format"),
    (
        {
            "layers": [
                {"kind": "plain", "out_channels": 8, "name": "a"},
                {"kind": "plain", "out_channels": 8, "name": "a"},
            ]
        },
        "layers[1].name",
    ),
    (
        # an explicit name that collides with a default one
        {
            "layers": [
                {"kind": "plain", "out_channels": 8, "name": "layer1"},
                {"kind": "plain", "out_channels": 8},
            ]
        },
        "layers[1].name",
    ),
]


@pytest.mark.parametrize(("data", "field"), BAD_NETS, ids=[f for _, f in BAD_NETS])
def test_bad_netspec(data: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        NetSpec.from_json(json.dumps(data))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    with pytest.raises(SpecError) as info2:
        NetSpec.from_dict(data)
    assert info2.value.field == field


def test_duplicate_names_message() -> None:
    with pytest.raises(SpecError, match="duplicate layer name 'x'"):
        NetSpec(
            layers=(
                BlockSpec("plain", 8, name="x"),
                BlockSpec("residual", 8),
                BlockSpec("plain", 4, name="x"),
            )
        )


@pytest.mark.parametrize(
    "text",
    [
        '{"layers": [{"kind": "pattern4", "out_channels": 8, "attention": "se", "skip_attention": "se", '
        '"gamma_s": NaN}]}',
        '{"layers": [{"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam": Infinity}]}',
        '{"layers": [{"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam": -Infinity}]}',
        "NaN",
    ],
)
def test_nan_in_json_text(text: str) -> None:
    with pytest.raises(SpecError, match=r"NaN|Infinity"):
        NetSpec.from_json(text)


def test_overflowing_float_in_json_is_rejected() -> None:
    text = '{"layers": [{"kind": "pattern2_mix", "out_channels": 8, "attention": "se", "lam": 1e999}]}'
    with pytest.raises(SpecError) as info:
        NetSpec.from_json(text)
    assert info.value.field == "layers[0].lam"


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '"layers"', "null", "3", b"\xff\xfe\x00", b"\x80abc"])
def test_not_a_spec(text: str | bytes) -> None:
    with pytest.raises(SpecError):
        NetSpec.from_json(text)


def test_unknown_top_level_key_lists_known_keys() -> None:
    with pytest.raises(SpecError) as info:
        NetSpec.from_json('{"layers": [{"kind": "plain", "out_channels": 8}], "lr": 0.1}')
    assert info.value.field == "lr"
    for key in ("layers", "stem_channels", "num_classes"):
        assert key in str(info.value)


def test_direct_construction_errors_name_the_field() -> None:
    with pytest.raises(SpecError) as info:
        BlockSpec("pattern2", 8, attention=AttentionSpec("se"), lam=0.5)
    assert info.value.field == "lam"
    with pytest.raises(SpecError) as info:
        AttentionSpec("nope")
    assert info.value.field == "name"
    with pytest.raises(SpecError) as info:
        NetSpec(layers=(BlockSpec("plain", 8),), num_classes=-3)
    assert info.value.field == "num_classes"


def test_error_under() -> None:
    err = SpecError("name", "bad").under("attention").under("layers[2]")
    assert err.field == "layers[2].attention.name"
    assert str(err) == "layers[2].attention.name: bad"
    assert SpecError("", "bad").under("layers[0]").field == "layers[0]"


def test_valid_edge_values_are_accepted() -> None:
    BlockSpec("plain", 1)
    BlockSpec("plain", 8192)
    BlockSpec("plain", 8, name="_")
    BlockSpec("plain", 8, name="a" * 64)
    BlockSpec("pattern2", 8, attention=AttentionSpec("se", reduction=1024))
    BlockSpec("pattern2_mix", 8, attention="se", lam=-0.5)
    NetSpec(layers=(BlockSpec("plain", 8),), in_channels=64, num_classes=100_000, stem_channels=8192)
