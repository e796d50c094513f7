"""Tests for resattn.training.retrain: full training with checkpoints, resume, and weights that load into exports."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from resattn import AttentionSpec, BlockSpec, NetSpec, build
from resattn.errors import ConfigError
from resattn.export.source import write_export
from resattn.study.recipe import Recipe, load_recipe
from resattn.training.retrain import (
    CHECKPOINT,
    METRICS,
    SPEC_FILE,
    WEIGHTS,
    default_out_dir,
    run_training,
    spec_from_file,
    spec_from_model_file,
)
from tests.conftest import ROOT

TRAIN_IMAGES = 256


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny_spec(attention: str = "se") -> NetSpec:
    options = {"reduction": 4} if attention in ("se", "cbam", "coord") else {}
    return NetSpec(
        layers=(
            BlockSpec(kind="pattern2", out_channels=8, stride=2, attention=AttentionSpec(attention, **options)),
            BlockSpec(kind="residual", out_channels=8),
        ),
        stem_channels=8,
    )


def _cfg(recipe):
    """The recipe's data and train tables, as run_training takes them."""
    return recipe.data, recipe.train


def tiny_recipe(npz: Path, epochs: int = 2) -> Recipe:
    return load_recipe(ROOT / "search" / "quick.toml").with_overrides(
        [f"data.dataset=npz:{npz}", f"train.epochs={epochs}", "train.batch_size=64", "train.eval_batch_size=512"]
    )


def test_writes_weights_spec_metrics(tmp_path: Path, cifar_npz: Path) -> None:
    spec = tiny_spec()
    seen: list[int] = []
    run = run_training(spec, *_cfg(tiny_recipe(cifar_npz)), out=tmp_path / "run", source="test", device="cpu",
                       train_images=TRAIN_IMAGES, on_epoch=lambda r, n: seen.append(r.epoch))
    assert seen == [1, 2]
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} >= {WEIGHTS, SPEC_FILE, METRICS, CHECKPOINT}
    assert NetSpec.from_json((out / SPEC_FILE).read_text()) == spec
    metrics = json.loads((out / METRICS).read_text())
    for key in ("test_accuracy", "epochs", "seconds", "images_per_second", "device", "dataset", "source"):
        assert key in metrics, key
    assert metrics["epochs"] == 2 and metrics["device"] == "cpu" and metrics["source"] == "test"
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_accuracy"] == run.test_accuracy
    assert metrics["train_images"] == TRAIN_IMAGES
    assert "test split" in metrics["evaluated_on"]
    state = torch.load(out / WEIGHTS, weights_only=True)
    build(spec).load_state_dict(state, strict=True)


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path: Path, cifar_npz: Path) -> None:
    spec, recipe = tiny_spec(), tiny_recipe(cifar_npz)
    straight = run_training(spec, *_cfg(recipe), out=tmp_path / "a", source="t", device="cpu",
                            train_images=TRAIN_IMAGES)

    def stop_after_first(result, epochs: int) -> None:
        if result.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(spec, *_cfg(recipe), out=tmp_path / "b", source="t", device="cpu", train_images=TRAIN_IMAGES,
                     on_epoch=stop_after_first)
    ckpt = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["epochs"] == 2
    assert not (tmp_path / "b" / WEIGHTS).exists()
    with pytest.raises(ConfigError, match="--resume"):  # a fresh run must not overwrite the checkpoint
        run_training(spec, *_cfg(recipe), out=tmp_path / "b", source="t", device="cpu", train_images=TRAIN_IMAGES)

    starts: list[int] = []
    epochs_run: list[int] = []
    resumed = run_training(spec, *_cfg(recipe), out=tmp_path / "b", source="t", device="cpu", train_images=TRAIN_IMAGES,
                           resume=True, on_start=lambda first, n, notes: starts.append(first),
                           on_epoch=lambda r, n: epochs_run.append(r.epoch))
    assert starts == [2] and epochs_run == [2]
    assert resumed.resumed_from == 1 and resumed.epochs == 2
    a = torch.load(tmp_path / "a" / WEIGHTS, weights_only=True)
    b = torch.load(tmp_path / "b" / WEIGHTS, weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert resumed.test_accuracy == pytest.approx(straight.test_accuracy, abs=2e-3)


def test_resume_refuses_other_spec_settings_or_missing_checkpoint(tmp_path: Path, cifar_npz: Path) -> None:
    spec, recipe = tiny_spec(), tiny_recipe(cifar_npz, epochs=1)
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_training(spec, *_cfg(recipe), out=tmp_path / "r", source="t", device="cpu", resume=True)
    run_training(spec, *_cfg(recipe), out=tmp_path / "r", source="t", device="cpu", train_images=TRAIN_IMAGES)
    with pytest.raises(ConfigError, match="another architecture"):
        run_training(tiny_spec("eca"), *_cfg(recipe), out=tmp_path / "r", source="t", device="cpu", resume=True,
                     train_images=TRAIN_IMAGES)
    with pytest.raises(ConfigError, match="epochs=1 \\(now 3\\)"):
        run_training(spec, *_cfg(tiny_recipe(cifar_npz, epochs=3)), out=tmp_path / "r", source="t", device="cpu",
                     resume=True, train_images=TRAIN_IMAGES)


def test_saved_weights_load_into_exported_file(tmp_path: Path, cifar_npz: Path) -> None:
    spec = NetSpec(
        layers=(
            BlockSpec(kind="pattern4", out_channels=8, stride=2, attention=AttentionSpec("se", reduction=2),
                      skip_attention=AttentionSpec("eca")),
            BlockSpec(kind="pattern2_mix", out_channels=8, attention=AttentionSpec("simam")),
        ),
        stem_channels=8,
    )
    run_training(spec, *_cfg(tiny_recipe(cifar_npz, epochs=1)), out=tmp_path / "run", source="t", device="cpu",
                 train_images=TRAIN_IMAGES)
    state = torch.load(tmp_path / "run" / WEIGHTS, weights_only=True)
    exported = write_export(tmp_path / "winner.py", spec)
    model = runpy.run_path(str(exported))["build_model"]()
    model.load_state_dict(state, strict=True)
    reference = build(spec)
    reference.load_state_dict(state, strict=True)
    model.eval()
    reference.eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    # --model reads the same architecture back from the exported file.
    assert spec_from_model_file(exported) == spec


def test_dataset_without_test_split_holds_out_val_fraction(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    npz = tmp_path / "notest.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(120) % 10)
    recipe = tiny_recipe(npz, epochs=1).with_overrides(["data.val_fraction=0.25"])
    notes: list[str] = []
    run = run_training(
        tiny_spec(), *_cfg(recipe), seed=recipe.search.seed, out=tmp_path / "run", source="t", device="cpu",
        on_start=lambda first, n, got: notes.extend(got),
    )
    assert run.train_images == 90
    assert "no test split" in run.evaluated_on and "30 images" in run.evaluated_on
    assert notes and "no test split" in notes[0]


def test_spec_inputs_and_errors(tmp_path: Path, cifar_npz: Path) -> None:
    good = tmp_path / "spec.json"
    good.write_text(tiny_spec().to_json())
    assert spec_from_file(good) == tiny_spec()
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": []}')
    with pytest.raises(ConfigError, match=r"bad\.json"):
        spec_from_file(bad)
    not_export = tmp_path / "plain.py"
    not_export.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="no SPEC"):
        spec_from_model_file(not_export)
    # The file is parsed, never run: code in it does not execute, a computed SPEC is refused.
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.py"
    hostile.write_text(f"open({str(marker)!r}, 'w').close()\nSPEC = {tiny_spec().to_dict()!r}\n")
    assert spec_from_model_file(hostile) == tiny_spec() and not marker.exists()
    computed = tmp_path / "computed.py"
    computed.write_text("SPEC = dict(layers=__import__('os').listdir('.'))\n")
    with pytest.raises(ConfigError, match="not a plain literal"):
        spec_from_model_file(computed)
    hundred = NetSpec(layers=tiny_spec().layers, stem_channels=8, num_classes=100)
    with pytest.raises(ConfigError, match="100 outputs"):
        run_training(hundred, *_cfg(tiny_recipe(cifar_npz)), out=tmp_path / "x", source="t", device="cpu")
    assert default_out_dir("my study/trial 3") == Path("studies/train-my-study-trial-3")
