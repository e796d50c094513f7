"""Study recipes: dataset, proxy budget, training hyper-parameters, sampler, pruner, objectives.

A recipe is a TOML file (``search/*.toml``)::

    name = "cifar10"           # optional, defaults to the file stem
    description = "..."        # optional
    [data]
    dataset = "cifar10"        # cifar10 | cifar100 | svhn | fashionmnist | npz:PATH | folder:PATH
                               #   | procedural[:N]
    data_dir = ""              # where datasets are cached; "" = the default cache dir
    val_fraction = 0.1         # fraction of the train split held out for validation (seeded)
    train_images = 20000       # proxy budget: training images per trial (seeded subset); 0 = all
    image_size = 32            # only used by folder: (images are resized to this size)
    [train]                    # any field of resattn.training.loop.TrainConfig
    epochs = 8
    batch_size = 256
    lr = 0.2
    init = "scratch"           # or "checkpoint:PATH": every trial starts from these weights (warm start)
    finetune_lr = 0.02         # the peak learning rate instead of lr when init is a checkpoint
    [search]
    sampler = "tpe"            # tpe (multivariate, group) | random | nsga2
    pruner = "hyperband"       # hyperband | median | none (ignored, with a notice, with several objectives)
    objectives = ["val_accuracy"]   # val_accuracy (maximise) first, then params / flops (minimise)
    seed = 0                   # sampler seed and the seed of the validation split and proxy subset
    max_params = 0             # 0 = no limit
    max_flops = 0              # 0 = no limit
    space = "seed"             # the space used when --space is not given (name or path)
    convergence_noise = 0.005  # --stop-when-converged: stop when the best can improve by less

Every table and key is optional (defaults as above, and :class:`~resattn.training.loop.TrainConfig`'s).
``npz:PATH`` and ``folder:PATH`` are relative to the current working directory (where the
search runs), not to the recipe file.

Everything is validated when the file is loaded; a problem raises
:class:`~resattn.errors.ConfigError` naming the file, the dotted key (``search.pruner``) and what
is allowed. :meth:`Recipe.with_overrides` applies ``--set KEY=VALUE`` overrides from the command
line, parsed to each field's type.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resattn.errors import ConfigError
from resattn.tomlfile import is_int, literal, read_toml
from resattn.training.config import DATASETS, FINETUNE_LR, DataConfig, TrainConfig

__all__ = [
    "DATASETS",
    "OBJECTIVES",
    "PRUNERS",
    "SAMPLERS",
    "DataConfig",
    "Recipe",
    "SearchConfig",
    "load_recipe",
    "parse_recipe",
]

log = logging.getLogger(__name__)

RECIPE_FORMAT = "resattn.recipe/1"
#: ``procedural:N`` bounds (training images), as resattn.training.data accepts them.
SAMPLERS: tuple[str, ...] = ("tpe", "random", "nsga2")
PRUNERS: tuple[str, ...] = ("hyperband", "median", "none")
#: Objective names; ``val_accuracy`` is maximised, the others minimised.
OBJECTIVES: tuple[str, ...] = ("val_accuracy", "params", "flops")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


@dataclass(frozen=True)
class SearchConfig:
    """The ``[search]`` table: sampler, pruner, objectives, seed and limits."""

    sampler: str = "tpe"  # tpe (multivariate, group) | random | nsga2
    pruner: str = "hyperband"  # hyperband | median | none; ignored (with a notice) with several objectives
    objectives: tuple[str, ...] = ("val_accuracy",)  # val_accuracy first; then params and/or flops
    seed: int = 0  # sampler seed, and the seed of the validation split and proxy subset
    max_params: int = 0  # 0 = no limit
    max_flops: int = 0  # 0 = no limit
    space: str = "seed"  # the search space used when --space is not given (a shipped name or a path)
    #: --stop-when-converged stops once the best accuracy can improve by less than this: the proxy's
    #: seed-to-seed noise (measure it with `resattn validate --seeds 2`).
    convergence_noise: float = 0.005

    def __post_init__(self) -> None:
        if not isinstance(self.space, str) or not self.space.strip():
            raise ConfigError(
                "must be a space name (seed, resnet20, quick, resnet18, resnet50) or a path to a space file, "
                f"got {literal(self.space)}",
                key="space",
            )
        if self.sampler not in SAMPLERS:
            raise ConfigError(
                f"unknown sampler {literal(self.sampler)}; allowed: {', '.join(SAMPLERS)}", key="sampler"
            )
        if self.pruner not in PRUNERS:
            raise ConfigError(
                f"unknown pruner {literal(self.pruner)}; allowed: {', '.join(PRUNERS)}", key="pruner"
            )
        objectives = self.objectives
        if isinstance(objectives, str) or not isinstance(objectives, Sequence):
            raise ConfigError(
                f"must be a list of objective names, got {literal(objectives)}; "
                f"allowed: {', '.join(OBJECTIVES)}",
                key="objectives",
            )
        objectives = tuple(objectives)
        if not objectives:
            raise ConfigError(f"must not be empty; allowed: {', '.join(OBJECTIVES)}", key="objectives")
        for o in objectives:
            if o not in OBJECTIVES:
                raise ConfigError(
                    f"unknown objective {literal(o)}; allowed: {', '.join(OBJECTIVES)}", key="objectives"
                )
        if len(set(objectives)) != len(objectives):
            raise ConfigError(f"has duplicate entries: {', '.join(objectives)}", key="objectives")
        if objectives[0] != "val_accuracy":
            raise ConfigError(
                f"the first objective must be val_accuracy, got {', '.join(objectives)}; "
                "add params and/or flops after it",
                key="objectives",
            )
        object.__setattr__(self, "objectives", objectives)
        # Several objectives with a pruner other than "none" is allowed: Optuna cannot prune
        # multi-objective trials, so the search ignores the pruner and tells the user once
        # (resattn.study.search.search_notices).
        if not is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise ConfigError(f"must be an integer from 0 to 2**32 - 1, got {literal(self.seed)}", key="seed")
        for name in ("max_params", "max_flops"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ConfigError(f"must be an integer ≥ 0 (0 = no limit), got {literal(value)}", key=name)
        noise = self.convergence_noise
        number = isinstance(noise, int | float) and not isinstance(noise, bool)
        if not (number and math.isfinite(noise) and 0 < noise < 1):
            raise ConfigError(
                f"must be an accuracy difference between 0 and 1 (e.g. 0.005), got {literal(noise)}",
                key="convergence_noise",
            )
        object.__setattr__(self, "convergence_noise", float(noise))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "objectives": list(self.objectives)}


_TABLES: dict[str, type] = {"data": DataConfig, "train": TrainConfig, "search": SearchConfig}
#: Keys of ``data`` that do not change results (excluded from the fingerprint).
#: ``search.space`` only picks the default space; the space itself is fingerprinted on its own.
#: ``train.precision`` / ``channels_last`` / ``compile`` are how this process runs the training, chosen
#: per device like the device itself, and recorded on every trial (``precision``, ``channels_last``, ``compiled``).
_NOT_FINGERPRINTED = {
    "data": ("data_dir",),
    "train": ("precision", "channels_last", "compile"),
    "search": ("space", "convergence_noise"),
}
#: What the fingerprint of a recipe made before those settings existed held in their place (their
#: defaults then), so such studies continue.
_LEGACY_FINGERPRINT: dict[str, dict[str, Any]] = {"train": {"bf16": True, "channels_last": True}}
#: Keys added after studies already existed: fingerprinted only when they differ from the value that
#: reproduces the old behaviour, so a study created before they existed continues with the same recipe.
#: table -> key -> that value.
_FINGERPRINTED_UNLESS: dict[str, dict[str, Any]] = {"train": {"init": "scratch", "finetune_lr": FINETUNE_LR}}


def fingerprinted_values(recipe: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The tables of a recipe dict (:meth:`Recipe.to_dict`, or one a study recorded) that the
    fingerprint covers: the values that change results."""
    out: dict[str, dict[str, Any]] = {}
    for table in _TABLES:
        values = recipe.get(table) or {}
        added = _FINGERPRINTED_UNLESS.get(table, {})
        skip = _NOT_FINGERPRINTED.get(table, ()) + tuple(_LEGACY_FINGERPRINT.get(table, ()))
        out[table] = {k: v for k, v in values.items() if k not in skip and not (k in added and v == added[k])}
    return out


def _fields(cls: type) -> tuple[str, ...]:
    """The keys a table accepts: its fields, plus deprecated older forms (init-only, e.g. ``train.bf16``)."""
    init_only = [name for name, hint in typing.get_type_hints(cls).items() if isinstance(hint, dataclasses.InitVar)]
    return tuple(f.name for f in dataclasses.fields(cls)) + tuple(init_only)


@dataclass(frozen=True)
class Recipe:
    """A parsed, validated recipe. Build one with :func:`load_recipe` or :func:`parse_recipe`."""

    name: str
    path: Path | None
    data: DataConfig
    train: TrainConfig
    search: SearchConfig
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Every value, defaults included (JSON-serialisable), plus name, description and path."""
        return {
            "format": RECIPE_FORMAT,
            "name": self.name,
            "description": self.description,
            "path": str(self.path) if self.path is not None else None,
            "data": self.data.to_dict(),
            "train": self.train.to_dict(),
            "search": self.search.to_dict(),
        }

    def fingerprint(self) -> str:
        """sha256 hex of every value that changes results: independent of comments, key order,
        defaults written out or not, name, description, path and ``data.data_dir``."""
        content: dict[str, Any] = {"format": RECIPE_FORMAT, **fingerprinted_values(self.to_dict())}
        for table in _TABLES:
            content[table] |= _LEGACY_FINGERPRINT.get(table, {})
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def with_overrides(self, overrides: Mapping[str, Any] | Sequence[str]) -> Recipe:
        """A copy with ``table.field`` values replaced, e.g. ``["train.epochs=3"]`` or
        ``{"search.objectives": "val_accuracy,params"}``.

        String values are parsed to the field's type: integers, floats, booleans
        (true/false/1/0/yes/no) and comma-separated lists. Errors name ``--set KEY``.
        """
        items: list[tuple[str, Any]] = []
        if isinstance(overrides, Mapping):
            items = list(overrides.items())
        else:
            for item in overrides:
                if not isinstance(item, str) or "=" not in item:
                    raise ConfigError(
                        f"must be KEY=VALUE, e.g. train.epochs=3; got {literal(item)}", key="--set"
                    )
                key, value = item.split("=", 1)
                items.append((key.strip(), value))
        tables = {t: getattr(self, t).to_dict() for t in _TABLES}
        changed: list[str] = []
        for key, raw in items:
            table, _, field = key.partition(".")
            allowed_keys = ", ".join(f"{t}.{f}" for t, cls in _TABLES.items() for f in _fields(cls))
            if table not in _TABLES or field not in _fields(_TABLES[table]):
                raise ConfigError(f"unknown key {key!r}; allowed: {allowed_keys}", key=f"--set {key}")
            tables[table][field] = _parse_value(raw, _TABLES[table], field, f"--set {key}")
            changed.append(key)
        configs: dict[str, Any] = {}
        for table, cls in _TABLES.items():
            try:
                configs[table] = cls(**tables[table])
            except ConfigError as err:
                full = f"{table}.{err.key}"
                if full in changed:
                    raise ConfigError(err.reason, key=f"--set {full}") from None
                raise ConfigError(
                    f"{err.reason} (after --set {', '.join(changed)}; change it too with --set {full}=VALUE)",
                    file=_src(self),
                    key=full,
                ) from None
        log.debug("recipe %r with overrides %s", self.name, ", ".join(changed))
        return dataclasses.replace(self, **configs)


def _src(recipe: Recipe) -> str | None:
    return str(recipe.path) if recipe.path is not None else None


def _parse_value(raw: Any, cls: type, field: str, key: str) -> Any:
    """Parse an override string to the type of ``cls.field``; non-strings pass through."""
    if not isinstance(raw, str):
        return raw
    hint = typing.get_type_hints(cls)[field]
    if isinstance(hint, dataclasses.InitVar):
        hint = hint.type
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # bool | None -> bool
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    text = raw.strip()
    if hint is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"must be a boolean ({', '.join(_TRUE + _FALSE)}), got {raw!r}", key=key)
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"must be an integer, got {raw!r}", key=key) from None
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"must be a number, got {raw!r}", key=key) from None
    if typing.get_origin(hint) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def parse_recipe(data: dict[str, Any], source: str, *, path: Path | None = None) -> Recipe:
    """Validate a parsed TOML document and build the :class:`Recipe`.

    ``source`` names the file in error messages; the name defaults to its stem.
    """
    if not isinstance(data, dict):
        raise ConfigError("a recipe must be a TOML table", file=source)
    allowed_top = ("name", "description", *_TABLES)
    for key in data:
        if key not in allowed_top:
            raise ConfigError(
                f"unknown key; allowed keys: {', '.join(allowed_top)}", file=source, key=str(key)
            )
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise ConfigError(f"must be a non-empty printable string, got {literal(name)}", file=source, key="name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"must be a string, got {literal(description)}", file=source, key="description")
    configs: dict[str, Any] = {}
    for table, cls in _TABLES.items():
        values = data.get(table, {})
        if not isinstance(values, dict):
            raise ConfigError(f"must be a table [{table}], got {literal(values)}", file=source, key=table)
        fields = _fields(cls)
        for key in values:
            if key not in fields:
                raise ConfigError(
                    f"unknown key; allowed keys: {', '.join(fields)}", file=source, key=f"{table}.{key}"
                )
        if table == "search" and isinstance(values.get("objectives"), list):
            values = {**values, "objectives": tuple(values["objectives"])}
        try:
            configs[table] = cls(**values)
        except ConfigError as err:
            raise ConfigError(err.reason, file=source, key=f"{table}.{err.key}") from None
    return Recipe(name=name, path=path, description=description, **configs)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe TOML file (see the module docstring for the format)."""
    path = Path(path)
    source = str(path)
    data = read_toml(path, "recipe file")
    recipe = parse_recipe(data, source, path=path)
    log.debug("loaded recipe %r from %s, fingerprint %s", recipe.name, source, recipe.fingerprint()[:12])
    return recipe
