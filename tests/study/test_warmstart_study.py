"""Warm-started studies (issue 16): the recipe keys train.init / train.finetune_lr, the check of a
checkpoint against the space before a study is made, and what the study and its trials record."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from resattn import build
from resattn.errors import ConfigError, StorageError
from resattn.study import keys
from resattn.study.objective import check_init
from resattn.study.recipe import load_recipe
from resattn.study.setup import open_study
from resattn.study.space import load_space, parse_space, residual_spec
from tests.conftest import ROOT
from tests.helpers import TINY_SPACE, tiny_search

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: The shipped recipes' fingerprints before train.init / train.finetune_lr existed.
OLD_RECIPE_FINGERPRINTS = {
    "quick": "9c562db8c123e809b4df5fcb0caeea6c37f8280870dbb72524faa3e8f239ae91",
    "cifar10": "2eee3f545af974716182dcc931efc4b8aed2448800a49d970d968d3be0480451",
}
#: What reproduces a shipped recipe's values of then (quick was re-tuned for the faster loop since).
THEN = {"quick": ["data.val_fraction=0.1", "data.train_images=2000", "train.epochs=3"], "cifar10": []}


def _recipe(*overrides: str):
    recipe = load_recipe(ROOT / "search" / "quick.toml")
    return recipe.with_overrides(list(overrides)) if overrides else recipe


@pytest.mark.parametrize("name", list(OLD_RECIPE_FINGERPRINTS))
def test_recipes_keep_their_fingerprints(name: str) -> None:
    recipe = load_recipe(ROOT / "search" / f"{name}.toml").with_overrides(THEN[name])
    assert recipe.fingerprint() == OLD_RECIPE_FINGERPRINTS[name]
    explicit = recipe.with_overrides(["train.init=scratch", "train.finetune_lr=0.02"])
    assert explicit.fingerprint() == recipe.fingerprint()


def test_init_and_finetune_lr_change_the_fingerprint() -> None:
    base = _recipe()
    warm = _recipe("train.init=checkpoint:a.pt")
    assert warm.train.init == "checkpoint:a.pt" and warm.train.warm
    assert len({base.fingerprint(), warm.fingerprint(), _recipe("train.init=checkpoint:b.pt").fingerprint(),
                _recipe("train.init=checkpoint:a.pt", "train.finetune_lr=0.05").fingerprint()}) == 4
    assert warm.to_dict()["train"]["init"] == "checkpoint:a.pt"
    with pytest.raises(ConfigError, match=r"--set train\.init"):
        _recipe("train.init=pretrained")


def _tiny(text: str = TINY_SPACE) -> object:
    import tomllib

    return parse_space(tomllib.loads(text), "tiny.toml")


def _save_residual(space, path: Path) -> Path:
    torch.manual_seed(0)
    spec = residual_spec(space)
    torch.save(build(spec).state_dict(), path)
    return path


def test_check_init_reads_and_checks_against_the_space(tmp_path: Path) -> None:
    space = _tiny()
    assert check_init(space, _recipe()) is None
    path = _save_residual(space, tmp_path / "w.pt")
    weights = check_init(space, _recipe(f"train.init=checkpoint:{path}"))
    assert weights is not None and weights.path == path
    renamed = _tiny(TINY_SPACE.replace('"s1"', '"a1"').replace('"tiny"', '"renamed"'))
    with pytest.raises(ConfigError, match=r"lacks \d+ tensors of the all-residual network of space 'renamed'"):
        check_init(renamed, _recipe(f"train.init=checkpoint:{path}"))
    quick = load_space(ROOT / "space" / "quick.toml")  # other widths
    with pytest.raises(ConfigError, match="does not fit this network"):
        check_init(quick, _recipe(f"train.init=checkpoint:{path}"))
    with pytest.raises(ConfigError, match="does not exist"):
        check_init(space, _recipe(f"train.init=checkpoint:{tmp_path / 'missing.pt'}"))


def test_continuing_with_a_changed_checkpoint_is_refused(tmp_path: Path) -> None:
    space = _tiny()
    path = _save_residual(space, tmp_path / "w.pt")
    recipe = _recipe(f"train.init=checkpoint:{path}")
    storage = optuna.storages.InMemoryStorage()
    init = check_init(space, recipe)
    assert init is not None
    study, created = open_study(storage, "warm", space, recipe, init=init.to_dict())
    assert created and study.user_attrs[keys.STUDY_INIT]["sha256"] == init.sha256
    _, created = open_study(storage, "warm", space, recipe, init=init.to_dict())  # the same file: fine
    assert not created
    study.add_trial(optuna.trial.create_trial(value=0.5))  # a result to keep: the study is not replaced
    state = torch.load(path, weights_only=True)
    state["stem.conv.weight"] += 1.0
    torch.save(state, path)
    changed = check_init(space, recipe)
    assert changed is not None and changed.sha256 != init.sha256
    with pytest.raises(StorageError, match="has changed since"):
        open_study(storage, "warm", space, recipe, init=changed.to_dict())


def _main(args: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from resattn.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        main(args)
    return (exc.value.code if isinstance(exc.value.code, int) else 0), out.getvalue()


def test_a_warm_search_records_the_init_on_the_study_and_every_trial(tmp_path: Path, cifar_npz: Path) -> None:
    space = _tiny()
    path = _save_residual(space, tmp_path / "w.pt")
    db, code, out = tiny_search(tmp_path, cifar_npz, 4, "--init", f"checkpoint:{path}", "--set", "train.epochs=1")
    assert code == 0, out
    assert "warm start: every trial starts from" in out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    assert study.user_attrs[keys.STUDY_RECIPE]["train"]["init"] == f"checkpoint:{path}"
    assert study.user_attrs[keys.STUDY_INIT]["form"] == "resattn state_dict"
    trained = [t for t in study.trials if t.user_attrs.get(keys.DUPLICATE_OF) is None
               and t.state == optuna.trial.TrialState.COMPLETE]
    assert trained
    for t in trained:
        init = t.user_attrs[keys.INIT]
        assert init["sha256"] == study.user_attrs[keys.STUDY_INIT]["sha256"]
        assert init["loaded"] == len(torch.load(path, weights_only=True)) and init["new_other"] == 0
        assert (init["new_attention"] > 0) == any("pattern2" in p for p in t.user_attrs[keys.PLACEMENT])
    # show and the report say the study was warm-started, and from what
    from resattn.analysis.inspect import warm_start_line
    from resattn.analysis.report import _html_page

    line = warm_start_line(study)
    assert line is not None and f"checkpoint:{path}" in line and "fine-tuned at peak lr 0.02" in line
    assert f"checkpoint:{path}" in _html_page(study, [], None)
    code, shown = _main(["show", "--storage", f"sqlite:///{db}"])
    assert code == 0 and line in shown


def test_a_torchvision_checkpoint_fits_the_resnet18_space(tmp_path: Path) -> None:
    """An ImageNet ResNet-18 file (1,000 classes) as train.init of a 10-class search of space/resnet18.toml:
    everything but the head loads, the head starts fresh."""
    import torchvision

    from resattn.training.warmstart import check_fits, spec_shapes

    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    space = load_space(ROOT / "space" / "resnet18.toml")
    weights = check_init(space, _recipe(f"train.init=checkpoint:{path}"))
    assert weights is not None and weights.form == "torchvision ResNet state_dict"
    report, names = check_fits(spec_shapes(residual_spec(space, num_classes=10)), weights)
    assert report.head_reset and report.new_other == () and report.unused == 0
    assert len(names) == len(weights.state) - 2  # all but head.weight and head.bias
