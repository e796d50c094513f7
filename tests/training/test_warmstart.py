"""Tests for resattn.training.warmstart and train.init / train.finetune_lr: reading checkpoint files of
every accepted form, loading them into any placement, and one-line errors for bad files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torchvision.models.resnet import BasicBlock, ResNet

from resattn import AttentionSpec, BlockSpec, NetSpec, build, from_torchvision
from resattn.errors import ConfigError
from resattn.training.config import FINETUNE_LR, TrainConfig
from resattn.training.retrain import run_training
from resattn.training.warmstart import check_fits, initial_model, load_init, read_init, spec_shapes
from tests.training.test_retrain import tiny_recipe


def residual_net() -> NetSpec:
    return NetSpec(layers=(BlockSpec("residual", 8, 2, name="s1"), BlockSpec("residual", 16, 2, name="s2")),
                   stem_channels=8)


def placement() -> NetSpec:
    """The same backbone with attention in both slots (s1 near-identity gated, s2 post-addition)."""
    spec = residual_net()
    s1 = dataclasses.replace(spec.layers[0], kind="pattern4", attention=AttentionSpec("se", reduction=4),
                             skip_attention=AttentionSpec("eca"), gamma_s=0.0, gamma_r=0.0)
    s2 = dataclasses.replace(spec.layers[1], kind="pattern2", attention=AttentionSpec("eca"))
    return dataclasses.replace(spec, layers=(s1, s2))


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    model = build(residual_net())
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.3)
    state = model.state_dict()
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    return path, state


# ------------------------------------------------------------------------------------------ config


def test_train_init_values() -> None:
    assert TrainConfig().init == "scratch" and not TrainConfig().warm
    assert TrainConfig().peak_lr == TrainConfig().lr
    cfg = TrainConfig(init=" Checkpoint:runs/w.pt ", lr=0.3)
    assert cfg.init == "checkpoint:runs/w.pt" and cfg.warm and cfg.init_path == "runs/w.pt"
    assert cfg.peak_lr == FINETUNE_LR == cfg.finetune_lr
    assert TrainConfig(init="checkpoint:x", finetune_lr=0.05).peak_lr == 0.05
    assert TrainConfig(init="SCRATCH").init == "scratch"


@pytest.mark.parametrize(
    ("kwargs", "key", "text"),
    [
        ({"init": "imagenet"}, "init", "scratch or checkpoint:PATH"),
        ({"init": "checkpoint:  "}, "init", "needs a path"),
        ({"init": 3}, "init", "scratch or checkpoint:PATH"),
        ({"finetune_lr": 0}, "finetune_lr", "must be in (0.0, 100.0]"),
        ({"finetune_lr": "fast"}, "finetune_lr", "finite number"),
    ],
)
def test_bad_init_settings(kwargs, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert info.value.key == key
    assert text in str(info.value)


# ------------------------------------------------------------------------------------- reading files


def test_scratch_reads_nothing() -> None:
    assert read_init("scratch") is None


def test_reads_every_form_of_a_resattn_file(tmp_path: Path, trained) -> None:
    path, state = trained
    forms = {
        "plain": state,
        "wrapped": {"state_dict": state, "epoch": 3},
        "model": {"model": state, "optimizer": {}},
        "dataparallel": {f"module.{k}": v for k, v in state.items()},
        "checkpoint": {"format": "resattn.checkpoint/1", "epoch": 2, "model": state},
    }
    for name, obj in forms.items():
        target = tmp_path / f"{name}.pt"
        torch.save(obj, target)
        weights = read_init(f"checkpoint:{target}")
        assert weights is not None
        assert weights.state.keys() == state.keys(), name
        assert all(torch.equal(weights.state[k], state[k]) for k in state), name
        assert len(weights.sha256) == 64 and weights.path == target
    folder = read_init(f"checkpoint:{path.parent}")  # a resattn train folder: its weights.pt
    assert folder is not None and folder.path == path


def test_reads_a_torchvision_file_under_resattn_names(tmp_path: Path) -> None:
    theirs = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=4)
    torch.save(theirs.state_dict(), tmp_path / "resnet.pth")
    weights = read_init(f"checkpoint:{tmp_path / 'resnet.pth'}")
    assert weights is not None and weights.form.startswith("torchvision ResNet")
    spec, state = from_torchvision(theirs)
    assert weights.state.keys() == state.keys()
    model, report = initial_model(spec, TrainConfig(init=weights.init), weights)
    assert report is not None and report.loaded == len(state) and report.new_attention == 0
    assert torch.equal(model.state_dict()["stem.conv.weight"], theirs.state_dict()["conv1.weight"])


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (None, "does not exist"),
        (b"not a torch file at all", "not a torch file"),
        ({"epochs": 3}, "holds no state_dict"),
        ({"encoder.weight": torch.zeros(2)}, "neither resattn's"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, content, text: str) -> None:
    target = tmp_path / "init.pt"
    if isinstance(content, bytes):
        target.write_bytes(content)
    elif content is not None:
        torch.save(content, target)
    with pytest.raises(ConfigError) as info:
        read_init(f"checkpoint:{target}")
    message = str(info.value)
    assert info.value.key == "train.init" and text in message and str(target) in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------- loading


def test_loads_into_a_placement_and_reports_what_is_new(trained) -> None:
    path, state = trained
    weights = read_init(f"checkpoint:{path}")
    assert weights is not None
    model, report = initial_model(placement(), TrainConfig(init=weights.init), weights)
    assert report is not None
    assert report.loaded == len(state) and report.unused == 0 and not report.head_reset
    assert report.new_attention > 0 and report.new_other == ()
    own = model.state_dict()
    assert all(torch.equal(own[k], state[k]) for k in state)
    assert "attention tensors new" in report.describe()
    # γ = 0 gate and a fresh pattern2 mask: s1 computes what the trained residual block computes.
    x = torch.randn(2, 3, 16, 16)
    residual = build(residual_net())
    residual.load_state_dict(state)
    residual.eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.layers.s1(model.stem(x)), residual.layers.s1(residual.stem(x)))


def test_initial_model_is_seeded_and_reads_the_file_itself(trained) -> None:
    path, _ = trained
    a, _ = initial_model(placement(), TrainConfig(init=f"checkpoint:{path}", seed=5))
    b, _ = initial_model(placement(), TrainConfig(init=f"checkpoint:{path}", seed=5))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    _, report = initial_model(placement(), TrainConfig(seed=5))
    assert report is None


def test_another_head_starts_fresh_other_shapes_are_refused(trained, tmp_path: Path) -> None:
    path, _ = trained
    weights = read_init(f"checkpoint:{path}")
    assert weights is not None
    more_classes = dataclasses.replace(residual_net(), num_classes=100)
    report, names = check_fits(spec_shapes(more_classes), weights)
    assert report.head_reset and not any(n.startswith("head.") for n in names)
    wider = NetSpec(layers=(BlockSpec("residual", 12, 2, name="s1"), BlockSpec("residual", 16, 2, name="s2")),
                    stem_channels=8)
    with pytest.raises(ConfigError, match="does not fit this network") as info:
        load_init(build(wider), weights)
    assert "layers.s1" in str(info.value)
    torch.save({"layers.other.conv.weight": torch.zeros(8, 8, 3, 3)}, tmp_path / "other.pt")
    unrelated = read_init(f"checkpoint:{tmp_path / 'other.pt'}")
    assert unrelated is not None
    with pytest.raises(ConfigError, match="none of this network's tensors"):
        load_init(build(residual_net()), unrelated)


# ----------------------------------------------------------------------------------- full training


def test_run_training_from_a_checkpoint(tmp_path: Path, cifar_npz: Path) -> None:
    recipe = tiny_recipe(cifar_npz, epochs=1)
    first = run_training(residual_net(), recipe.data, recipe.train, out=tmp_path / "a", source="test",
                         device="cpu", train_images=128, search_split=True)
    assert first.init == "scratch" and any("--search-split" in n for n in first.notes)
    warm = dataclasses.replace(recipe.train, init=f"checkpoint:{tmp_path / 'a'}")
    second = run_training(placement(), recipe.data, warm, out=tmp_path / "b", source="test", device="cpu",
                          train_images=128)
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["init"] == f"checkpoint:{tmp_path / 'a'}"
    assert metrics["init_loaded"]["loaded"] > 0 and metrics["init_loaded"]["new_attention"] > 0
    assert any("starting from" in n for n in second.notes)
    with pytest.raises(ConfigError, match="does not exist"):
        run_training(placement(), recipe.data, dataclasses.replace(warm, init="checkpoint:nope.pt"),
                     out=tmp_path / "c", source="test", device="cpu", train_images=128)
    assert not (tmp_path / "c").exists()
