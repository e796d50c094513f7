"""Tests for resattn.study.space: parsing, validation, conditional sampling, its inverse, baselines."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import optuna
import pytest

from resattn import model_stats, presets
from resattn.errors import ConfigError
from resattn.model.attention import attention_options
from resattn.model.spec import AttentionSpec, BlockSpec, NetSpec
from resattn.study.space import (
    ConvLayer,
    SearchSpace,
    Slot,
    baseline_designs,
    load_space,
    params_for,
    parse_space,
    placement,
    sample,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("seed", "resnet20", "quick")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def shipped(name: str) -> SearchSpace:
    return load_space(ROOT / "space" / f"{name}.toml")


def _random_study(seed: int = 0) -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


def _sampled(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[optuna.Trial, NetSpec]]:
    study = _random_study(seed)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((trial, sample(trial, space, num_classes=10)))
    return out


def _replay(space: SearchSpace, params: dict) -> NetSpec:
    study = optuna.create_study()
    study.enqueue_trial(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an out-of-range fixed value warns; make it fail
        return sample(study.ask(), space, num_classes=10)


# ------------------------------------------------------------------------------------ shipped files


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_load(name: str) -> None:
    space = shipped(name)
    assert space.name == name
    assert space.path is not None and space.path.name == f"{name}.toml"
    assert space.slots
    json.dumps(space.to_dict(), allow_nan=False)
    assert len(space.fingerprint()) == 64


def test_seed_space_is_the_notebooks_backbone() -> None:
    space = shipped("seed")
    bb = space.backbone
    assert bb.stem_channels == 32
    shape = [(type(layer).__name__, layer.name, layer.out_channels, layer.stride) for layer in bb.layers]
    assert shape == [
        ("ConvLayer", "block1", 64, 1),
        ("Slot", "s1", 64, 1),
        ("Slot", "s2", 128, 2),
        ("ConvLayer", "block2", 128, 1),
    ]


def test_resnet20_space_has_nine_slots_with_overrides() -> None:
    space = shipped("resnet20")
    names = [s.name for s in space.slots]
    assert names == [f"s{stage}b{block}" for stage in (1, 2, 3) for block in (1, 2, 3)]
    assert [s.out_channels for s in space.slots] == [16] * 3 + [32] * 3 + [64] * 3
    assert [s.stride for s in space.slots] == [1, 1, 1, 2, 1, 1, 2, 1, 1]
    assert space.slot("s1b1").choices != space.slot("s3b3").choices  # the overrides took effect
    assert "pattern2_mix" not in space.slot("s1b1").choices.kinds


def test_quick_space_is_small() -> None:
    space = shipped("quick")
    assert max(layer.out_channels for layer in space.backbone.layers) <= 64
    assert sum(model_stats(spec).params for _, spec in _sampled(space, 5)) / 5 < 200_000


# ----------------------------------------------------------------------------------------- sampling


def _check_block(slot: Slot, block: BlockSpec, params: dict) -> None:
    c = slot.choices
    p = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(f"{slot.name}.")}
    assert (block.name, block.out_channels, block.stride) == (slot.name, slot.out_channels, slot.stride)
    assert block.kind in c.kinds and block.norm in c.norms
    if len(c.kinds) > 1:
        assert p["kind"] == block.kind
    else:
        assert "kind" not in p

    def check_attention(att: AttentionSpec | None, names: tuple[str, ...], role: str) -> set[str]:
        assert att is not None and att.name in names
        keys = {f"{role}attention"} if len(names) > 1 else set()
        takes = attention_options(att.name)
        if "reduction" in takes:
            assert att.reduction in c.reductions
            keys |= {f"{role}reduction"} if len(c.reductions) > 1 else set()
        if "spatial_kernel" in takes:
            assert att.spatial_kernel in c.spatial_kernels
            keys |= {f"{role}spatial_kernel"} if len(c.spatial_kernels) > 1 else set()
        return keys

    expected = {"kind"} if len(c.kinds) > 1 else set()
    expected |= {"norm"} if len(c.norms) > 1 else set()
    if block.kind in ("pattern1", "pattern2", "pattern2_mix"):
        expected |= check_attention(block.attention, c.attentions, "")
    if block.kind == "pattern2_mix":
        assert block.lam is not None and c.lam.contains(block.lam)
        assert block.lam_learnable in c.learnable
        expected |= {"lam"} if not c.lam.fixed else set()
        expected |= {"learnable"} if len(c.learnable) > 1 else set()
    if block.kind == "pattern4":
        expected |= check_attention(block.skip_attention, c.skip_attentions, "skip_")
        expected |= check_attention(block.attention, c.residual_attentions, "residual_")
        assert block.residual_path in c.residual_paths
        assert block.gamma_s is not None and c.gamma_s.contains(block.gamma_s)
        assert block.gamma_learnable in c.learnable
        expected |= {"residual_path"} if len(c.residual_paths) > 1 else set()
        expected |= {"gamma_s"} if not c.gamma_s.fixed else set()
        expected |= {"learnable"} if len(c.learnable) > 1 else set()
        if block.residual_path == "gated":
            assert block.gamma_r is not None and c.gamma_r.contains(block.gamma_r)
            expected |= {"gamma_r"} if not c.gamma_r.fixed else set()
        else:
            assert block.gamma_r is None
    assert set(p) == expected, (block.short(), sorted(p), sorted(expected))
    # The conditional structure, spelled out.
    if block.kind != "pattern4":
        assert not {k for k in p if k.startswith(("gamma", "skip_", "residual_"))}
    if block.kind != "pattern2_mix":
        assert "lam" not in p
    if block.kind in ("plain", "residual"):
        assert not {k for k in p if "attention" in k or "reduction" in k or "kernel" in k or k == "learnable"}


@pytest.mark.parametrize("name", SHIPPED)
def test_sampling_follows_backbone_and_choices(name: str) -> None:
    space = shipped(name)
    kinds_seen: set[str] = set()
    for trial, spec in _sampled(space, 300):
        assert spec.num_classes == 10
        assert spec.stem_channels == space.backbone.stem_channels
        assert spec.names() == tuple(layer.name for layer in space.backbone.layers)
        for layer, block in zip(space.backbone.layers, spec.layers, strict=True):
            if isinstance(layer, ConvLayer):
                assert block == BlockSpec(
                    "plain", layer.out_channels, layer.stride, norm=layer.norm, name=layer.name
                )
            else:
                _check_block(layer, block, trial.params)
                kinds_seen.add(block.kind)
        assert all(key.split(".", 1)[0] in {s.name for s in space.slots} for key in trial.params)
    assert kinds_seen == {k for s in space.slots for k in s.choices.kinds}


def test_sampled_spec_state_dict_uses_slot_names() -> None:
    from resattn import build

    space = shipped("seed")
    _, spec = _sampled(space, 1)[0]
    keys = build(spec).state_dict().keys()
    assert any(k.startswith("layers.s1.") for k in keys)
    assert any(k.startswith("layers.block2.") for k in keys)


def test_single_choices_are_not_suggested() -> None:
    space = shipped("quick")  # reductions [16], spatial_kernels [7], skip_attentions [se], gamma_s fixed
    for trial, _ in _sampled(space, 100):
        for key in trial.params:
            assert key.split(".", 1)[1] in {"kind", "attention", "residual_attention", "gamma_r"}, key


def test_sampling_works_with_tpe_multivariate_group() -> None:
    space = shipped("seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(multivariate=True, group=True, seed=0, n_startup_trials=5)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: model_stats(sample(t, space, num_classes=10)).params / 1e6, n_trials=12)
    assert len(study.trials) == 12


def test_placement() -> None:
    space = shipped("seed")
    spec = _replay(space, dict(baseline_designs(space))["seed-pattern4"])
    assert placement(spec, space) == [
        ("s1", "pattern4[se/r16|se/r16 γs=0 γr=0.1]"),
        ("s2", "pattern4[se/r16|se/r16 γs=0 γr=0.1]"),
    ]
    with pytest.raises(ValueError, match="s1"):
        placement(presets.seed_pattern4(), space)


# ----------------------------------------------------------------------------------------- inverse


@pytest.mark.parametrize("name", SHIPPED)
def test_params_for_round_trip(name: str) -> None:
    space = shipped(name)
    for _trial, spec in _sampled(space, 60, seed=1):
        params = params_for(space, spec)
        assert params is not None
        assert _replay(space, params) == spec


def test_params_for_equals_the_trial_params() -> None:
    space = shipped("seed")
    for trial, spec in _sampled(space, 50, seed=2):
        assert params_for(space, spec) == trial.params


def test_params_for_ignores_num_classes_and_in_channels() -> None:
    space = shipped("seed")
    _, spec = _sampled(space, 1)[0]
    other = dataclasses.replace(spec, num_classes=100, in_channels=1)
    assert params_for(space, other) == params_for(space, spec)


def test_params_for_rejects_specs_outside_the_space() -> None:
    space = shipped("seed")
    # Other layer names than the space's backbone.
    assert params_for(space, presets.seed_pattern2()) is None
    base = _replay(space, dict(baseline_designs(space))["seed-pattern2"])

    def with_slot(block: BlockSpec) -> NetSpec:
        layers = tuple(block if layer.name == block.name else layer for layer in base.layers)
        return dataclasses.replace(base, layers=layers)

    cbam4 = AttentionSpec("cbam", reduction=4, spatial_kernel=7)
    assert params_for(space, with_slot(BlockSpec("pattern2", 64, 1, attention=cbam4, name="s1"))) is None
    assert params_for(space, with_slot(BlockSpec("pattern2", 32, 1, attention="se", name="s1"))) is None
    gamma = BlockSpec("pattern4", 64, 1, attention="se", skip_attention="se", gamma_r=0.5, name="s1")
    assert params_for(space, with_slot(gamma)) is None
    assert params_for(space, dataclasses.replace(base, stem_channels=16)) is None
    quick = shipped("quick")
    assert params_for(quick, base) is None


# ---------------------------------------------------------------------------------------- baselines


def test_seed_space_baselines_have_the_notebook_parameter_counts() -> None:
    space = shipped("seed")
    designs = dict(baseline_designs(space))
    assert list(designs) == ["all-residual", "seed-pattern2", "seed-pattern4"]
    p2 = _replay(space, designs["seed-pattern2"])
    p4 = _replay(space, designs["seed-pattern4"])
    assert model_stats(p2).params == 475_374 == model_stats(presets.seed_pattern2()).params
    assert model_stats(p4).params == 478_150 == model_stats(presets.seed_pattern4()).params
    assert (
        model_stats(_replay(space, designs["all-residual"])).params
        == model_stats(presets.seed_residual()).params
    )
    # Equal to the presets up to layer names.
    for mine, preset in ((p2, presets.seed_pattern2()), (p4, presets.seed_pattern4())):
        strip = [dataclasses.replace(layer, name=None) for layer in mine.layers]
        assert strip == [dataclasses.replace(layer, name=None) for layer in preset.layers]


@pytest.mark.parametrize("name", ["quick", "resnet20"])
def test_all_baselines_expressible(name: str) -> None:
    space = shipped(name)
    designs = dict(baseline_designs(space))
    assert list(designs) == ["all-residual", "seed-pattern2", "seed-pattern4"]
    assert {block.kind for block in _replay(space, designs["all-residual"]).layers} <= {"plain", "residual"}
    p2 = _replay(space, designs["seed-pattern2"])
    assert {b.short() for b in p2.layers if b.name in {s.name for s in space.slots}} == {
        "pattern2[cbam/r16/k7]"
    }


def _write(tmp_path: Path, text: str, name: str = "space.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BASE = """
[backbone]
stem_channels = 8
layers = [
  { conv = "c0", out_channels = 8 },
  { slot = "s1", out_channels = 8 },
  { slot = "s2", out_channels = 16, stride = 2 },
]
"""


def test_baselines_are_skipped_where_not_expressible(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[choices]
kinds = ["residual", "pattern2", "pattern4"]
reductions = [8]
gamma_r = { low = 0.2, high = 0.3 }
"""
    )
    assert baseline_designs(load_space(_write(tmp_path, text))) == [
        ("all-residual", {"s1.kind": "residual", "s2.kind": "residual"})
    ]
    only_p4 = BASE + '[choices]\nkinds = ["pattern4"]\n[slots.s2]\nkinds = ["residual", "pattern4"]\n'
    designs = dict(baseline_designs(load_space(_write(tmp_path, only_p4))))
    assert list(designs) == ["seed-pattern4"]


def test_baselines_fall_back_to_the_slot_norm(tmp_path: Path) -> None:
    space = load_space(_write(tmp_path, BASE + '[choices]\nkinds = ["residual"]\nnorms = ["gn"]\n'))
    designs = baseline_designs(space)
    assert [d for d, _ in designs] == ["all-residual"]
    assert {b.norm for b in _replay(space, designs[0][1]).layers if b.name != "c0"} == {"gn"}


# ---------------------------------------------------------------------------------------- fingerprint

FP_A = """
# a comment
name = "a"
[backbone]
stem_channels = 8
layers = [{ slot = "s1", out_channels = 8 }, { conv = "c1", out_channels = 16, stride = 2 }]
[choices]
kinds = ["residual", "pattern2"]
attentions = ["se", "cbam"]
reductions = [8, 16]
gamma_r = { low = 0.0, high = 0.2 }
"""

FP_B = """
[choices]
gamma_r = { high = 0.2, low = 0.0 }   # keys reordered
reductions = [16, 8]                  # list reordered
attentions = ["cbam", "se"]
kinds = ["pattern2", "residual"]

[backbone]
layers = [
    { out_channels = 8, slot = "s1", stride = 1 },
    { stride = 2, out_channels = 16, conv = "c1", norm = "bn" },
]
stem_channels = 8
stem_norm = "bn"
"""

FP_C = """
[backbone]
stem_channels = 8
layers = [{ slot = "s1", out_channels = 8 }, { conv = "c1", out_channels = 16, stride = 2 }]
[slots.s1]   # the same choices, given as a per-slot override
kinds = ["residual", "pattern2"]
attentions = ["se", "cbam"]
reductions = [8, 16]
gamma_r = { low = 0.0, high = 0.2 }
"""


def test_fingerprint_is_stable(tmp_path: Path) -> None:
    a = load_space(_write(tmp_path, FP_A, "a.toml"))
    b = load_space(_write(tmp_path, FP_B, "b.toml"))
    c = load_space(_write(tmp_path, FP_C, "c.toml"))
    assert a.fingerprint() == b.fingerprint() == c.fingerprint()
    assert a.name == "a" and b.name == "b"
    assert a.slots == b.slots
    assert shipped("seed").fingerprint() == shipped("seed").fingerprint()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("reductions = [8, 16]", "reductions = [8, 16, 32]"),
        ('kinds = ["residual", "pattern2"]', 'kinds = ["residual", "pattern1"]'),
        ("high = 0.2", "high = 0.25"),
        ("stem_channels = 8", "stem_channels = 16"),
        ('{ slot = "s1", out_channels = 8 }', '{ slot = "s1", out_channels = 8, stride = 2 }'),
    ],
)
def test_fingerprint_changes_with_content(tmp_path: Path, old: str, new: str) -> None:
    assert old in FP_A
    a = load_space(_write(tmp_path, FP_A, "a.toml"))
    changed = load_space(_write(tmp_path, FP_A.replace(old, new), "a2.toml"))
    assert a.fingerprint() != changed.fingerprint()


def test_to_dict_is_canonical(tmp_path: Path) -> None:
    a = load_space(_write(tmp_path, FP_A, "a.toml")).to_dict()
    b = load_space(_write(tmp_path, FP_B, "b.toml")).to_dict()
    assert a["backbone"] == b["backbone"]
    assert a["backbone"]["layers"][0]["choices"]["reductions"] == [8, 16]
    assert a["backbone"]["layers"][0]["choices"]["gamma_r"] == {"low": 0.0, "high": 0.2, "log": False}


# ------------------------------------------------------------------------------------------ parsing


def test_plain_kind_and_empty_unused_lists_are_allowed(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[choices]
kinds = ["plain", "residual"]
attentions = []
skip_attentions = []
residual_attentions = []
reductions = []
spatial_kernels = []
residual_paths = []
learnable = []
"""
    )
    space = load_space(_write(tmp_path, text))
    assert {b.kind for _, spec in _sampled(space, 30) for b in spec.layers} == {"plain", "residual"}


def test_log_range_and_fixed_values(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[choices]
kinds = ["pattern2_mix", "pattern4"]
attentions = ["eca"]
skip_attentions = ["eca"]
residual_attentions = ["simam"]
residual_paths = ["gated"]
lam = { low = 0.01, high = 0.5, log = true }
gamma_s = { low = 0.05, high = 0.05 }
gamma_r = 0
"""
    )
    space = load_space(_write(tmp_path, text))
    c = space.slot("s1").choices
    assert c.lam.log and c.gamma_s.fixed and c.gamma_r.fixed and c.gamma_r.low == 0.0
    for trial, spec in _sampled(space, 40):
        for block in spec.layers[1:]:
            if block.kind == "pattern4":
                assert (block.gamma_s, block.gamma_r) == (0.05, 0.0)
        assert not any(k.endswith(("gamma_s", "gamma_r")) for k in trial.params)


def test_defaults_when_choices_omitted(tmp_path: Path) -> None:
    space = load_space(_write(tmp_path, BASE))
    c = space.slot("s1").choices
    assert "plain" not in c.kinds and "pattern4" in c.kinds
    assert c.reductions == (16,) and c.spatial_kernels == (7,) and c.norms == ("bn",)
    assert (c.gamma_s.low, c.gamma_r.low, c.lam.low) == (0.0, 0.1, 0.1)
    assert [d for d, _ in baseline_designs(space)] == ["all-residual", "seed-pattern2", "seed-pattern4"]


def test_conv_norm_defaults_to_stem_norm(tmp_path: Path) -> None:
    text = (
        BASE.replace("stem_channels = 8", 'stem_channels = 8\nstem_norm = "gn"')
        + '[choices]\nnorms = ["gn"]\n'
    )
    space = load_space(_write(tmp_path, text))
    conv = space.backbone.layers[0]
    assert isinstance(conv, ConvLayer) and conv.norm == "gn"


def test_parse_space_from_dict() -> None:
    data = {"backbone": {"stem_channels": 4, "layers": [{"slot": "x", "out_channels": 4}]}}
    space = parse_space(data, "inline.toml")
    assert space.name == "inline" and space.path is None
    with pytest.raises(ConfigError, match=r"inline\.toml: backbone\.layers\[0\]\.out_channels"):
        parse_space({"backbone": {"stem_channels": 4, "layers": [{"slot": "x"}]}}, "inline.toml")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_space("does/not/exist/nope.toml")


def _layers(*entries: str) -> str:
    return "[backbone]\nstem_channels = 8\nlayers = [\n" + ",\n".join(entries) + "\n]\n"


S1 = '{ slot = "s1", out_channels = 8 }'
S2 = '{ slot = "s2", out_channels = 16, stride = 2 }'

# (TOML text, the dotted key the error names, a piece of what the message says is allowed)
BAD_SPACES: list[tuple[str, str | None, str]] = [
    ("name = 'x'\n[backbone\nstem_channels = 8\n", None, "line 2"),
    (BASE + "foo = 1\n", "backbone.foo", "stem_channels, stem_norm, stem, in_channels, layers"),
    ("foo = 1\n" + BASE, "foo", "backbone, choices, slots"),
    ("name = 3\n" + BASE, "name", "string"),
    (
        BASE.replace("stem_channels = 8", "stem_channels = 8\nnum_classes = 10"),
        "backbone.num_classes",
        "dataset",
    ),
    (_layers(S1).replace("stem_channels = 8\n", ""), "backbone.stem_channels", "integer"),
    (
        _layers(S1).replace("stem_channels = 8", "stem_channels = 0"),
        "backbone.stem_channels",
        "integer from 1",
    ),
    (
        _layers(S1).replace("stem_channels = 8", 'stem_channels = 8\nstem_norm = "ln"'),
        "backbone.stem_norm",
        "gn",
    ),
    ("[choices]\nkinds = ['residual']\n", "backbone", "layers"),
    ("[backbone]\nstem_channels = 8\nlayers = []\n", "backbone.layers", "slot"),
    (_layers('{ conv = "c0", out_channels = 8 }'), "backbone.layers", "slot = NAME"),
    (_layers('{ slot = "s1", conv = "c1", out_channels = 8 }'), "backbone.layers[0]", "conv = NAME"),
    (_layers("{ out_channels = 8 }"), "backbone.layers[0]", "slot = NAME"),
    (_layers('"s1"'), "backbone.layers[0]", "slot = NAME"),
    (_layers('{ slot = "s1", out_channels = 8, norm = "bn" }'), "backbone.layers[0].norm", "norms"),
    (
        _layers('{ slot = "s1", out_channels = 8, width = 3 }'),
        "backbone.layers[0].width",
        "out_channels, stride",
    ),
    (_layers(S1, '{ slot = "s1", out_channels = 8 }'), "backbone.layers[1].slot", "unique"),
    (_layers('{ conv = "s1", out_channels = 8 }', S1), "backbone.layers[1].slot", "unique"),
    (_layers('{ slot = "S1", out_channels = 8 }'), "backbone.layers[0].slot", "[a-z_][a-z0-9_]*"),
    (_layers('{ slot = "1a", out_channels = 8 }'), "backbone.layers[0].slot", "[a-z_][a-z0-9_]*"),
    (_layers('{ slot = "s.1", out_channels = 8 }'), "backbone.layers[0].slot", "[a-z_][a-z0-9_]*"),
    (_layers('{ slot = "forward", out_channels = 8 }'), "backbone.layers[0].slot", "reserved"),
    (_layers('{ slot = "s1", out_channels = 0 }'), "backbone.layers[0].out_channels", "integer from 1"),
    (_layers('{ slot = "s1", out_channels = 8.5 }'), "backbone.layers[0].out_channels", "integer from 1"),
    (_layers('{ slot = "s1" }'), "backbone.layers[0].out_channels", "integer from 1"),
    (_layers(S1, '{ slot = "s2", out_channels = 8, stride = 3 }'), "backbone.layers[1].stride", "1 or 2"),
    (_layers('{ conv = "c", out_channels = 8, norm = "ln" }', S1), "backbone.layers[0].norm", '"gn"'),
    (BASE + "[choices]\nkind = ['residual']\n", "choices.kind", "kinds"),
    (BASE + "[choices]\nkinds = ['pattern3']\n", "choices.kinds", '"pattern4"'),
    (BASE + "[choices]\nkinds = 'residual'\n", "choices.kinds", '"residual"'),
    (BASE + "[choices]\nkinds = []\n", "choices.kinds", '"pattern2_mix"'),
    (BASE + "[choices]\nkinds = ['residual', 'residual']\n", "choices.kinds", "duplicate"),
    (BASE + "[choices]\nattentions = ['se', 'sk']\n", "choices.attentions", '"coord"'),
    (BASE + "[choices]\nattentions = ['se', 'se']\n", "choices.attentions", "duplicate"),
    (BASE + "[choices]\nskip_attentions = ['bam']\n", "choices.skip_attentions", '"simam"'),
    (BASE + "[choices]\nresidual_attentions = [1]\n", "choices.residual_attentions", '"cbam"'),
    (BASE + "[choices]\nnorms = ['ln']\n", "choices.norms", '"gn"'),
    (BASE + "[choices]\nnorms = []\n", "choices.norms", '"bn"'),
    (BASE + "[choices]\nresidual_paths = ['skip']\n", "choices.residual_paths", '"direct"'),
    (BASE + "[choices]\nreductions = [0]\n", "choices.reductions", "positive integers"),
    (BASE + "[choices]\nreductions = [8.0]\n", "choices.reductions", "positive integers"),
    (BASE + "[choices]\nreductions = [true]\n", "choices.reductions", "positive integers"),
    (BASE + "[choices]\nreductions = [8, 8]\n", "choices.reductions", "duplicate"),
    (BASE + "[choices]\nspatial_kernels = [5]\n", "choices.spatial_kernels", "3, 7"),
    (BASE + "[choices]\nlearnable = [1]\n", "choices.learnable", "true, false"),
    (BASE + "[choices]\ngamma_r = { low = 0.2, high = 0.1 }\n", "choices.gamma_r", "≤ high"),
    (BASE + "[choices]\ngamma_s = -0.1\n", "choices.gamma_s", "within [0, 10]"),
    (BASE + "[choices]\ngamma_s = { low = -0.1, high = 0.1 }\n", "choices.gamma_s.low", "within [0, 10]"),
    (BASE + "[choices]\ngamma_r = { low = 0.0, high = 1e300 }\n", "choices.gamma_r.high", "within [0, 10]"),
    (BASE + "[choices]\ngamma_s = 10.5\n", "choices.gamma_s", "got 10.5"),
    (BASE + "[choices]\ngamma_s = { low = 0.0, high = inf }\n", "choices.gamma_s.high", "finite"),
    (BASE + "[choices]\nlam = nan\n", "choices.lam", "finite"),
    (BASE + "[choices]\nlam = { low = 0.5, high = 1.5 }\n", "choices.lam.high", "[0, 1]"),
    (BASE + "[choices]\nlam = -0.5\n", "choices.lam", "[0, 1]"),
    (BASE + "[choices]\ngamma_r = { low = 0.0, high = 0.1, log = true }\n", "choices.gamma_r.log", "low > 0"),
    (BASE + "[choices]\ngamma_r = { low = 0.0, hi = 0.1 }\n", "choices.gamma_r.hi", "low, high, log"),
    (BASE + "[choices]\ngamma_r = { low = 0.0 }\n", "choices.gamma_r.high", "low = "),
    (BASE + "[choices]\ngamma_r = '0.1'\n", "choices.gamma_r", "a number (fixed)"),
    (
        BASE + "[choices]\ngamma_r = { low = 0.1, high = 0.2, log = 'yes' }\n",
        "choices.gamma_r.log",
        "true or false",
    ),
    (BASE + "[slots.s9]\nkinds = ['residual']\n", "slots.s9", "s1, s2"),
    (BASE + "[slots.c0]\nkinds = ['residual']\n", "slots.c0", "s1, s2"),
    (BASE + "[slots.s2]\nkinds = ['pattern5']\n", "slots.s2.kinds", '"pattern4"'),
    (BASE + "[slots.s2]\ndepth = 3\n", "slots.s2.depth", "kinds"),
    (BASE + "[slots]\ns2 = 3\n", "slots.s2", "table"),
    (BASE + "[slots.s1]\nkinds = ['pattern2']\nattentions = []\n", "slots.s1.attentions", '"cbam"'),
    (BASE + "[choices]\nkinds = ['pattern1']\nattentions = []\n", "choices.attentions", "slot 's1'"),
    (BASE + "[slots.s2]\nkinds = ['pattern4']\nskip_attentions = []\n", "slots.s2.skip_attentions", '"eca"'),
    (BASE + "[slots.s2]\nkinds = ['pattern4']\nresidual_paths = []\n", "slots.s2.residual_paths", '"gated"'),
    (BASE + "[slots.s2]\nkinds = ['pattern4']\nlearnable = []\n", "slots.s2.learnable", "true, false"),
    (
        BASE + "[slots.s2]\nkinds = ['pattern2']\nattentions = ['se']\nreductions = []\n",
        "slots.s2.reductions",
        "positive integers",
    ),
    (
        BASE + "[slots.s2]\nkinds = ['pattern2']\nattentions = ['cbam']\nspatial_kernels = []\n",
        "slots.s2.spatial_kernels",
        "3, 7",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "allowed"), BAD_SPACES, ids=[f"{i}-{c[1]}" for i, c in enumerate(BAD_SPACES)]
)
def test_bad_spaces_are_rejected(tmp_path: Path, text: str, key: str | None, allowed: str) -> None:
    path = _write(tmp_path, text, "bad_space.toml")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    err = info.value
    message = str(err)
    assert "bad_space.toml" in message
    assert err.file == str(path)
    if key is not None:
        assert err.key == key, message
        assert key in message
    assert allowed in message, message
