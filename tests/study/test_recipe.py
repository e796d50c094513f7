"""Tests for resattn.study.recipe: shipped recipes, validation, --set overrides, fingerprints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from resattn.errors import ConfigError
from resattn.study.recipe import DataConfig, Recipe, SearchConfig, load_recipe, parse_recipe
from resattn.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def shipped(name: str) -> Recipe:
    return load_recipe(ROOT / "search" / f"{name}.toml")


def _write(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ shipped files


def test_cifar10_recipe() -> None:
    r = shipped("cifar10")
    assert r.name == "cifar10" and r.path is not None and r.path.name == "cifar10.toml"
    assert r.data == DataConfig(dataset="cifar10", val_fraction=0.1, train_images=20000, image_size=32)
    assert (r.train.epochs, r.train.batch_size, r.train.lr) == (8, 256, 0.2)
    assert isinstance(r.train, TrainConfig)
    assert r.search == SearchConfig(sampler="tpe", pruner="hyperband", objectives=("val_accuracy",))


def test_quick_recipe() -> None:
    r = shipped("quick")
    assert r.data.dataset == "npz:../shared/data/cifar10-6k.npz"
    assert (r.data.train_images, r.data.val_fraction) == (3000, 0.2)
    assert (r.train.epochs, r.train.batch_size) == (4, 128)
    assert (r.search.sampler, r.search.pruner) == ("tpe", "hyperband")


@pytest.mark.parametrize("name", ["cifar10", "quick"])
def test_to_dict_is_json(name: str) -> None:
    r = shipped(name)
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["train"] == r.train.to_dict()
    assert d["search"]["objectives"] == ["val_accuracy"]
    assert d["name"] == name and d["path"].endswith(f"{name}.toml")
    assert len(r.fingerprint()) == 64
    assert r.fingerprint() == shipped(name).fingerprint()
    # A recipe built from its own dict is the same recipe.
    again = parse_recipe({k: d[k] for k in ("name", "data", "train", "search")}, "again.toml")
    assert again.fingerprint() == r.fingerprint()
    assert (again.data, again.train, again.search) == (r.data, r.train, r.search)


def test_defaults_for_an_empty_recipe(tmp_path: Path) -> None:
    r = load_recipe(_write(tmp_path, "", "empty.toml"))
    assert r.name == "empty"
    assert (r.data, r.train, r.search) == (DataConfig(), TrainConfig(), SearchConfig())


def test_multi_objective_with_no_pruner(tmp_path: Path) -> None:
    text = '[search]\nsampler = "nsga2"\npruner = "none"\nobjectives = ["val_accuracy", "params", "flops"]\n'
    r = load_recipe(_write(tmp_path, text))
    assert r.search.objectives == ("val_accuracy", "params", "flops")
    single = load_recipe(_write(tmp_path, '[search]\nsampler = "nsga2"\n', "single.toml"))
    assert single.search.sampler == "nsga2"
    tpe = load_recipe(
        _write(tmp_path, '[search]\npruner = "none"\nobjectives = ["val_accuracy", "flops"]\n', "t.toml")
    )
    assert tpe.search.sampler == "tpe"


@pytest.mark.parametrize(
    "dataset",
    ["cifar100", "svhn", "fashionmnist", "npz:x.npz", "folder:/data/imgs", "procedural", "procedural:500"],
)
def test_dataset_forms(tmp_path: Path, dataset: str) -> None:
    assert load_recipe(_write(tmp_path, f'[data]\ndataset = "{dataset}"\n')).data.dataset == dataset


# ----------------------------------------------------------------------------------------- fingerprint

FP_A = """
# comment
name = "a"
[data]
dataset = "cifar10"
train_images = 20000
[train]
epochs = 8
lr = 0.2
[search]
sampler = "tpe"
"""

FP_B = """
[search]
objectives = ["val_accuracy"]   # the default, written out
sampler = "tpe"
[train]
lr = 0.2
epochs = 8
batch_size = 256
[data]
train_images = 20000
data_dir = "/somewhere/else"    # where the cache lives does not change results
"""


def test_fingerprint_is_stable(tmp_path: Path) -> None:
    a = load_recipe(_write(tmp_path, FP_A, "a.toml"))
    b = load_recipe(_write(tmp_path, FP_B, "b.toml"))
    assert a.fingerprint() == b.fingerprint()
    assert a.name == "a" and b.name == "b"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("epochs = 8", "epochs = 9"),
        ("lr = 0.2", "lr = 0.1"),
        ('sampler = "tpe"', 'sampler = "random"'),
        ("train_images = 20000", "train_images = 0"),
    ],
)
def test_fingerprint_changes_with_content(tmp_path: Path, old: str, new: str) -> None:
    a = load_recipe(_write(tmp_path, FP_A, "a.toml"))
    assert load_recipe(_write(tmp_path, FP_A.replace(old, new), "a2.toml")).fingerprint() != a.fingerprint()


def test_convergence_noise_does_not_change_the_fingerprint() -> None:
    # It only decides when --stop-when-converged stops: a study may be continued with another one.
    r = shipped("quick")
    other = r.with_overrides(["search.convergence_noise=0.03"])
    assert other.search.convergence_noise == 0.03 and r.search.convergence_noise == 0.005
    assert other.fingerprint() == r.fingerprint()


# ------------------------------------------------------------------------------------------ overrides


def test_overrides_parse_types() -> None:
    r = shipped("cifar10")
    o = r.with_overrides(
        [
            "train.epochs=3",
            "train.lr=0.05",
            "train.flip=no",
            "train.bf16=0",
            "train.nesterov=YES",
            "data.dataset=npz:../x.npz",
            "data.val_fraction=0.2",
            "search.objectives=val_accuracy, params",
            "search.pruner=none",
            "search.seed=7",
            "train.schedule = cosine",
        ]
    )
    assert (o.train.epochs, o.train.lr, o.train.flip, o.train.precision, o.train.nesterov) == (
        3,
        0.05,
        False,
        "fp32",  # the deprecated train.bf16=0 reads as precision fp32
        True,
    )
    assert o.train.schedule == "cosine"
    assert o.data.dataset == "npz:../x.npz" and o.data.val_fraction == 0.2
    assert o.search.objectives == ("val_accuracy", "params") and o.search.pruner == "none"
    assert o.search.seed == 7
    assert (o.name, o.path) == (r.name, r.path)
    assert r.train.epochs == 8  # the original is unchanged
    assert o.fingerprint() != r.fingerprint()


def test_overrides_as_mapping() -> None:
    r = shipped("quick")
    o = r.with_overrides({"train.epochs": "1", "data.train_images": 500, "search.sampler": "random"})
    assert (o.train.epochs, o.data.train_images, o.search.sampler) == (1, 500, "random")
    assert r.with_overrides({}) == r
    assert r.with_overrides(["data.data_dir=/tmp/cache"]).fingerprint() == r.fingerprint()


@pytest.mark.parametrize(
    ("override", "key", "says"),
    [
        ("train.epochs=three", "--set train.epochs", "integer"),
        ("train.epochs=0", "--set train.epochs", "positive integer"),
        ("train.epochs=2.5", "--set train.epochs", "integer"),
        ("train.lr=fast", "--set train.lr", "number"),
        ("train.lr=nan", "--set train.lr", "finite"),
        ("train.flip=maybe", "--set train.flip", "true, 1, yes, false, 0, no"),
        ("train.epoch=3", "--set train.epoch", "train.epochs"),
        ("model.width=3", "--set model.width", "data.dataset"),
        ("epochs=3", "--set epochs", "search.sampler"),
        ("train.epochs", "--set", "KEY=VALUE"),
        ("data.dataset=imagenet", "--set data.dataset", "cifar100"),
        ("search.sampler=cmaes", "--set search.sampler", "tpe, random, nsga2"),
        ("search.objectives=", "--set search.objectives", "val_accuracy, params, flops"),
        ("search.objectives=params,val_accuracy", "--set search.objectives", "val_accuracy"),
        ("search.objectives=val_accuracy,latency", "--set search.objectives", "params, flops"),
    ],
)
def test_bad_overrides(override: str, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        shipped("cifar10").with_overrides([override])
    assert info.value.key == key, str(info.value)
    assert key in str(info.value) and says in str(info.value), str(info.value)


def test_several_objectives_with_a_pruner_load_and_get_a_notice() -> None:
    # Issue 7: not an error any more; the search ignores the pruner and says so once.
    from resattn.study.search import search_notices

    r = shipped("cifar10").with_overrides(["search.objectives=val_accuracy,params"])
    assert r.search.pruner == "hyperband" and r.search.objectives == ("val_accuracy", "params")
    (notice,) = search_notices(r)
    assert "pruner 'hyperband' ignored" in notice and "several objectives" in notice


# ------------------------------------------------------------------------------------------ bad files

BAD_RECIPES: list[tuple[str, str | None, str]] = [
    ("[data\ndataset = 'cifar10'\n", None, "line 1"),
    ("model = 3\n", "model", "name, description, data, train, search"),
    ("name = ''\n", "name", "non-empty"),
    ("description = 3\n", "description", "string"),
    ("data = 3\n", "data", "table"),
    ("[data]\nsize = 3\n", "data.size", "dataset, data_dir, val_fraction, train_images, image_size"),
    ("[data]\ndataset = 'imagenet'\n", "data.dataset", "cifar10, cifar100, svhn, fashionmnist, npz:PATH"),
    ("[data]\ndataset = 3\n", "data.dataset", "folder:PATH"),
    ("[data]\ndataset = 'npz:'\n", "data.dataset", "path"),
    ("[data]\ndataset = 'procedural:5'\n", "data.dataset", "10 to 1000000"),
    ("[data]\ndataset = 'procedural:x'\n", "data.dataset", "10 to 1000000"),
    ("[data]\ndata_dir = 3\n", "data.data_dir", "string"),
    ("[data]\nval_fraction = 0\n", "data.val_fraction", "(0, 1)"),
    ("[data]\nval_fraction = 1.5\n", "data.val_fraction", "(0, 1)"),
    ("[data]\nval_fraction = nan\n", "data.val_fraction", "(0, 1)"),
    ("[data]\ntrain_images = -1\n", "data.train_images", "≥ 0"),
    ("[data]\ntrain_images = 1.5\n", "data.train_images", "integer"),
    ("[data]\nimage_size = 2\n", "data.image_size", "4 to 1024"),
    ("[train]\nepoch = 3\n", "train.epoch", "epochs, batch_size"),
    ("[train]\nepochs = 0\n", "train.epochs", "positive integer"),
    ("[train]\nlr = 'fast'\n", "train.lr", "finite number"),
    ("[train]\nschedule = 'step'\n", "train.schedule", "onecycle, cosine, constant"),
    ("[train]\nflip = 1\n", "train.flip", "true or false"),
    ("[search]\nsampler = 'cmaes'\n", "search.sampler", "tpe, random, nsga2"),
    ("[search]\npruner = 'asha'\n", "search.pruner", "hyperband, median, none"),
    ("[search]\nobjectives = []\n", "search.objectives", "val_accuracy, params, flops"),
    ("[search]\nobjectives = 'val_accuracy'\n", "search.objectives", "val_accuracy, params, flops"),
    ("[search]\nobjectives = ['params']\n", "search.objectives", "first objective must be val_accuracy"),
    (
        "[search]\npruner = 'none'\nobjectives = ['val_accuracy', 'val_accuracy']\n",
        "search.objectives",
        "duplicate",
    ),
    ("[search]\nobjectives = ['val_accuracy', 'latency']\n", "search.objectives", "params, flops"),
    ("[search]\nseed = -1\n", "search.seed", "integer from 0"),
    ("[search]\nseed = true\n", "search.seed", "integer from 0"),
    ("[search]\nmax_params = -5\n", "search.max_params", "≥ 0"),
    ("[search]\nmax_flops = 1.5e9\n", "search.max_flops", "integer"),
    ("[search]\nworkers = 4\n", "search.workers", "sampler, pruner, objectives"),
    ("[search]\nconvergence_noise = 0\n", "search.convergence_noise", "between 0 and 1"),
    ("[search]\nconvergence_noise = 2.0\n", "search.convergence_noise", "between 0 and 1"),
    ("[search]\nconvergence_noise = nan\n", "search.convergence_noise", "between 0 and 1"),
    ("[search]\nconvergence_noise = 'a lot'\n", "search.convergence_noise", "between 0 and 1"),
]


@pytest.mark.parametrize(
    ("text", "key", "says"), BAD_RECIPES, ids=[f"{i}-{c[1]}" for i, c in enumerate(BAD_RECIPES)]
)
def test_bad_recipes_are_rejected(tmp_path: Path, text: str, key: str | None, says: str) -> None:
    path = _write(tmp_path, text, "bad_recipe.toml")
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    err = info.value
    message = str(err)
    assert "bad_recipe.toml" in message and err.file == str(path)
    if key is not None:
        assert err.key == key, message
        assert key in message
    assert says in message, message


def test_missing_recipe_file() -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_recipe("does/not/exist/nope.toml")


def test_configs_validate_on_construction() -> None:
    with pytest.raises(ConfigError, match="sampler"):
        SearchConfig(sampler="grid")
    with pytest.raises(ConfigError, match="dataset"):
        DataConfig(dataset="")
    assert SearchConfig(objectives=["val_accuracy"]).objectives == ("val_accuracy",)  # type: ignore[arg-type]
    assert dataclasses.asdict(DataConfig(val_fraction=1 / 4))["val_fraction"] == 0.25


def test_dataset_is_normalised(tmp_path: Path) -> None:
    assert DataConfig(dataset=" CIFAR10 ").dataset == "cifar10"
    assert DataConfig(dataset="NPZ:data/x.npz").dataset == "npz:data/x.npz"
    assert DataConfig(dataset="procedural:0600").dataset == "procedural:600"
    a = load_recipe(_write(tmp_path, '[data]\ndataset = "SVHN"\n', "a.toml"))
    b = load_recipe(_write(tmp_path, '[data]\ndataset = "svhn"\n', "b.toml"))
    assert a.fingerprint() == b.fingerprint()
