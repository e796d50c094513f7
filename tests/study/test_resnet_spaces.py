"""The torchvision ResNet search spaces (space/resnet18.toml, space/resnet50.toml) and the backbone keys
they need (``stem``, a slot's ``branch``), without changing the fingerprints of the spaces before them."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from resattn import presets
from resattn.errors import ConfigError
from resattn.model.spec import BlockSpec
from resattn.study.space import baseline_designs, load_space, params_for, residual_spec, sample
from tests.conftest import ROOT

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Fingerprints of the spaces shipped before ``stem`` / ``branch`` existed: studies made with them must
#: continue (``resattn search`` refuses a study whose space fingerprint changed).
OLD_FINGERPRINTS = {
    "seed": "49ba966f663b1ed482b33a598aaf906b71cbdbb5f41afa857ca053a62875453d",
    "quick": "e2175198bedee851a8285d5a0b796ae50ab3daf8055c764e941548bf4e55fb71",
    "resnet20": "10763d5dec5035be2e333c648647141397142a79199f61c10404b1cbf38284a0",
}


@pytest.mark.parametrize("name", list(OLD_FINGERPRINTS))
def test_older_spaces_keep_their_fingerprints(name: str) -> None:
    space = load_space(ROOT / "space" / f"{name}.toml")
    assert space.fingerprint() == OLD_FINGERPRINTS[name]
    assert "stem" not in space.backbone.to_dict()
    assert all("branch" not in layer for layer in space.backbone.to_dict()["layers"])


@pytest.mark.parametrize(("name", "depth", "slots"), [("resnet18", 18, 8), ("resnet50", 50, 16)])
def test_resnet_spaces_are_torchvision_resnets_with_one_slot_per_block(name: str, depth: int, slots: int) -> None:
    space = load_space(ROOT / "space" / f"{name}.toml")
    assert len(space.slots) == slots == len(space.backbone.layers)
    assert space.backbone.stem == "imagenet"
    assert residual_spec(space, num_classes=1000) == presets.resnet(depth)
    assert params_for(space, presets.resnet(depth, num_classes=10)) is not None  # the preset is in the space
    designs = [design for design, _ in baseline_designs(space)]
    assert designs == ["all-residual", "seed-pattern2", "seed-pattern4"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        spec = sample(study.ask(), space, num_classes=10)
        assert [(b.out_channels, b.stride, b.branch) for b in spec.layers] == [
            (b.out_channels, b.stride, b.branch) for b in presets.resnet(depth).layers
        ]
        assert spec.stem == "imagenet"
        assert params_for(space, spec) is not None  # sample and its inverse agree with branches too
    assert space.fingerprint() != load_space(ROOT / "space" / "resnet20.toml").fingerprint()


def _space(tmp_path: Path, backbone: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f"[backbone]\nstem_channels = 16\n{backbone}\n[choices]\nkinds = ['residual']\n")
    return path


def test_stem_and_branch_keys(tmp_path: Path) -> None:
    space = load_space(_space(tmp_path, 'stem = "imagenet"\nlayers = [{ slot = "a", out_channels = 64, '
                                        'branch = "bottleneck" }]'))
    assert space.backbone.stem == "imagenet" and space.slots[0].branch == "bottleneck"
    assert space.backbone.to_dict()["stem"] == "imagenet"
    assert space.backbone.to_dict()["layers"][0]["branch"] == "bottleneck"
    explicit = load_space(_space(tmp_path, 'stem = "cifar"\nlayers = [{ slot = "a", out_channels = 64, '
                                           'branch = "basic" }]'))
    implicit = load_space(_space(tmp_path, 'layers = [{ slot = "a", out_channels = 64 }]'))
    assert explicit.fingerprint() == implicit.fingerprint()
    assert residual_spec(space).layers[0] == BlockSpec("residual", 64, name="a", branch="bottleneck")


@pytest.mark.parametrize(
    ("backbone", "key", "text"),
    [
        ('stem = "vit"\nlayers = [{ slot = "a", out_channels = 8 }]', "backbone.stem", '"cifar", "imagenet"'),
        ('layers = [{ slot = "a", out_channels = 8, branch = "wide" }]', "backbone.layers[0].branch",
         '"basic", "bottleneck"'),
        ('layers = [{ slot = "a", out_channels = 10, branch = "bottleneck" }]', "backbone.layers[0].out_channels",
         "multiple of 4"),
        ('layers = [{ conv = "c", out_channels = 8, branch = "bottleneck" }, { slot = "a", out_channels = 8 }]',
         "backbone.layers[0].branch", "unknown key"),
    ],
)
def test_bad_stem_and_branch_keys(tmp_path: Path, backbone: str, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_space(_space(tmp_path, backbone))
    assert info.value.key == key, str(info.value)
    assert text in str(info.value)
