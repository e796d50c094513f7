"""`resattn export` and `resattn train` through the CLI: tiny studies made in the test, real CIFAR images."""

from __future__ import annotations

import importlib.util
import json
import runpy
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState, create_trial

from resattn import AttentionSpec, BlockSpec, NetSpec
from resattn.cli import export as export_cmd_mod
from resattn.cli.main import main

TINY = ["--set", "data.train_images=256", "--set", "train.batch_size=64", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
    return code, out, err


def spec_with(attention: str, width: int = 8) -> NetSpec:
    options = {"reduction": 4} if attention in ("se", "cbam", "coord") else {}
    return NetSpec(
        layers=(
            BlockSpec(kind="pattern1", out_channels=width, stride=2, attention=AttentionSpec(attention, **options)),
            BlockSpec(kind="pattern4", out_channels=width, attention=AttentionSpec(attention, **options),
                      skip_attention=AttentionSpec("eca")),
        ),
        stem_channels=8,
    )


SPECS = [spec_with("se"), spec_with("cbam", 12), spec_with("coord"), spec_with("simam")]


def _add(study: optuna.Study, spec: NetSpec, state: TrialState = TrialState.COMPLETE, **kw: object) -> None:
    # What resattn.study.search.Objective records for a trial.
    attrs = {"spec": spec.to_json(), "params": 1000, "flops": 2000, "placement": ["layer0=pattern1"]}
    study.add_trial(create_trial(state=state, user_attrs=attrs, **kw))


def make_single(db: Path) -> str:
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name="single", storage=url, direction="maximize")
    _add(study, SPECS[0], value=0.4)
    _add(study, SPECS[1], value=0.6)  # the best
    _add(study, SPECS[2], TrialState.FAIL)
    return url


def add_multi(url: str) -> None:
    study = optuna.create_study(study_name="multi", storage=url, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_accuracy", "params"])
    _add(study, SPECS[0], values=[0.5, 1000.0])
    _add(study, SPECS[3], values=[0.7, 3000.0])
    _add(study, SPECS[2], values=[0.4, 4000.0])  # dominated


def spec_literal(path: Path) -> NetSpec:
    return NetSpec.from_dict(runpy.run_path(str(path))["SPEC"])


# ------------------------------------------------------------------------------------------- export


def test_export_best_and_numbered_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_single(tmp_path / "s.db")
    code, out, err = run_cli(["export", "--storage", url, "--best", "--out", str(tmp_path / "winner.py")], capsys)
    assert code == 0, err
    assert "wrote" in out and "build_model" in out
    namespace = runpy.run_path(str(tmp_path / "winner.py"))
    assert NetSpec.from_dict(namespace["SPEC"]) == SPECS[1]
    assert isinstance(namespace["build_model"](), torch.nn.Module)

    code, _, err = run_cli(["export", "--storage", url, "--study", "single", "--trial", "0",
                            "--out", str(tmp_path / "t0.py"), "--class-name", "Trial0"], capsys)
    assert code == 0, err
    assert spec_literal(tmp_path / "t0.py") == SPECS[0]
    assert "class Trial0" in (tmp_path / "t0.py").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--study", "single", "--trial", "2"], "FAIL"),
        (["--study", "single"], "--best"),
        (["--study", "single", "--trial", "0", "--best"], "not both"),
        (["--study", "nope", "--best"], "no study 'nope'"),
        (["--best"], "name one with --study: 'multi', 'single'"),
        (["--study", "multi", "--best"], "Pareto front: #0 (val_accuracy=0.5, params=1,000); #1"),
        (["--study", "single", "--best", "--format", "tflite"], "allowed: py, onnx"),
        (["--study", "single", "--best", "--weights", "w.pt"], "only used with --format onnx"),
        (["--study", "single", "--best", "--class-name", "1bad"], "class name"),
        (["--study", "single", "--best", "--format", "onnx", "--weights", "missing.pt"], "no weights file"),
    ],
)
def test_export_errors_exit_2_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    url = make_single(tmp_path / "s.db")
    add_multi(url)
    code, _, err = run_cli(["export", "--storage", url, "--out", str(tmp_path / "x.py"), *args], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.py").exists()


def test_export_multi_objective_needs_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    add_multi(url)
    code, _, err = run_cli(["export", "--storage", url, "--best", "--out", str(tmp_path / "m.py")], capsys)
    assert code == 2 and "--trial N" in err
    code, _, err = run_cli(["export", "--storage", url, "--trial", "1", "--out", str(tmp_path / "m.py")], capsys)
    assert code == 0, err
    assert spec_literal(tmp_path / "m.py") == SPECS[3]


def test_export_missing_storage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["export", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--best"], capsys)
    assert code == 2 and "no such file" in err
    assert not (tmp_path / "none.db").exists()


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")
def test_export_onnx_fresh_weights_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_single(tmp_path / "s.db")
    code, out, err = run_cli(["export", "--storage", url, "--best", "--format", "onnx",
                              "--out", str(tmp_path / "m.onnx")], capsys)
    assert code == 0, err
    assert "warning" in err and "untrained" in err
    assert (tmp_path / "m.onnx").is_file()
    if importlib.util.find_spec("onnxruntime") is not None:
        assert "onnxruntime check" in out and "ok" in out


def test_export_onnx_without_onnx_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_single(tmp_path / "s.db")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    code, _, err = run_cli(["export", "--storage", url, "--best", "--format", "onnx",
                            "--out", str(tmp_path / "m.onnx")], capsys)
    assert code == 2 and "pip install 'resattn[onnx]'" in err
    assert not (tmp_path / "m.onnx").exists()


# -------------------------------------------------------------------------------------------- train


def test_train_then_onnx_round_trip(tmp_path: Path, cifar_npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_single(tmp_path / "s.db")
    run_dir = tmp_path / "run"
    code, out, err = run_cli(["train", "--storage", url, "--best", "--recipe", "quick", "--epochs", "1",
                              "--set", f"data.dataset=npz:{cifar_npz}", *TINY, "--out", str(run_dir)], capsys)
    assert code == 0, err
    assert "epoch 1/1" in out and "test accuracy" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["train_images"] == 256
    assert metrics["source"].startswith("study single trial 1")
    assert NetSpec.from_json((run_dir / "spec.json").read_text()) == SPECS[1]

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnx / onnxruntime not installed")
    import onnxruntime

    onnx_path = tmp_path / "winner.onnx"
    code, out, err = run_cli(["export", "--storage", url, "--best", "--format", "onnx",
                              "--weights", str(run_dir / "weights.pt"), "--out", str(onnx_path)], capsys)
    assert code == 0, err
    assert "warning" not in err and "onnxruntime check" in out
    # The ONNX model and the exported .py file with the trained weights agree.
    code, _, err = run_cli(["export", "--storage", url, "--best", "--out", str(tmp_path / "winner.py")], capsys)
    assert code == 0, err
    model = runpy.run_path(str(tmp_path / "winner.py"))["build_model"]()
    model.load_state_dict(torch.load(run_dir / "weights.pt", weights_only=True), strict=True)
    model.eval()
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))  # batch 5: the batch axis is dynamic
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert float(np.max(np.abs(got - want))) < 1e-4

    # Without --study/--trial the spec.json next to the weights says which architecture they fit.
    code, out, err = run_cli(["export", "--format", "onnx", "--weights", str(run_dir / "weights.pt"),
                              "--out", str(tmp_path / "again.onnx")], capsys)
    assert code == 0, err
    assert "spec.json" in out


def test_train_interrupt_then_resume(
    tmp_path: Path, cifar_npz: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(SPECS[0].to_json())
    args = ["train", "--spec", str(spec_file), "--recipe", "quick", "--epochs", "2",
            "--set", f"data.dataset=npz:{cifar_npz}", *TINY, "--out", str(tmp_path / "run")]
    original = export_cmd_mod._TrainProgress.epoch_done

    def interrupt(self: object, result: object, epochs: int) -> None:
        original(self, result, epochs)
        raise KeyboardInterrupt

    monkeypatch.setattr(export_cmd_mod._TrainProgress, "epoch_done", interrupt)
    code, out, err = run_cli(args, capsys)
    assert code == 130
    assert "--resume" in err and "epoch 1/2" in out
    assert not (tmp_path / "run" / "weights.pt").exists()

    monkeypatch.setattr(export_cmd_mod._TrainProgress, "epoch_done", original)
    code, out, err = run_cli(args, capsys)  # without --resume: refused, the checkpoint is kept
    assert code == 2 and "--resume" in err
    code, out, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    assert "resuming at epoch 2 of 2" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["resumed_from_epoch"] == 1
    code, out, err = run_cli([*args, "--resume"], capsys)  # a finished run: nothing to resume
    assert code == 0, err
    assert "nothing left to train" in out and "resuming at epoch 3" not in out and "epoch 1/2" not in out

    other = tmp_path / "other.json"
    other.write_text(SPECS[3].to_json())
    other_args = [other if a == str(spec_file) else a for a in args]
    code, _, err = run_cli([str(a) for a in other_args] + ["--resume"], capsys)
    assert code == 2 and "another architecture" in err


def test_train_model_file_and_bad_inputs(
    tmp_path: Path, cifar_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_single(tmp_path / "s.db")
    code, _, err = run_cli(["export", "--storage", url, "--trial", "0", "--out", str(tmp_path / "w.py")], capsys)
    assert code == 0, err
    code, _, err = run_cli(["train", "--model", str(tmp_path / "w.py"), "--recipe", "quick", "--epochs", "1",
                            "--set", f"data.dataset=npz:{cifar_npz}", *TINY, "--out", str(tmp_path / "r")],
                           capsys)
    assert code == 0, err
    assert NetSpec.from_json((tmp_path / "r" / "spec.json").read_text()) == SPECS[0]

    for args, message in [
        (["--recipe", "quick"], "exactly one architecture"),
        (["--recipe", "quick", "--spec", "a.json", "--model", "b.py"], "--spec and --model"),
        (["--recipe", "quick", "--spec", str(tmp_path / "missing.json")], "cannot read"),
        (["--recipe", "nope", "--model", str(tmp_path / "w.py")], "file not found: nope"),
        (["--recipe", "quick", "--model", str(tmp_path / "w.py"), "--set", "data.train_images=-1"],
         "train_images"),
        (["--recipe", "quick", "--model", str(tmp_path / "w.py"), "--device", "tpu"], "unknown device"),
    ]:
        code, _, err = run_cli(["train", *args, "--out", str(tmp_path / "bad")], capsys)
        assert code == 2, (args, err)
        assert err.startswith("error: ") and message in err, (args, err)


def test_train_ignores_the_proxy_budget_unless_set(tmp_path: Path) -> None:
    from resattn.cli.export import _train_inputs

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(SPECS[0].to_json())

    def images(*overrides: str) -> int | None:
        *_, recipe, train_images = _train_inputs(None, None, False, spec_file, None, "unused", "quick",
                                                 list(overrides))
        assert recipe.data.train_images > 0 or overrides  # the quick recipe has a proxy budget
        return train_images

    assert images() is None  # every training image
    assert images("train.epochs=2") is None
    assert images("data.train_images=256") == 256
    assert images(" data.train_images = 0") == 0
