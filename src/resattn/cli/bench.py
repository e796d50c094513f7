"""``resattn bench``: images/s of the fast loop against a plain DataLoader loop, or search
trials/hour per worker count."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from resattn.cli.common import SpaceOpt, fail, guard, load_inputs, out_console, resolve_file, setup_logging
from resattn.errors import ConfigError

__all__ = ["bench_cmd"]


def bench_cmd(
    space: SpaceOpt = "seed",
    dataset: Annotated[str, typer.Option(help="Dataset to time on.")] = "npz:../shared/data/cifar10-6k.npz",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    batch_size: Annotated[int, typer.Option(min=2)] = 256,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per loop.")] = 30,
    warmup_steps: Annotated[int, typer.Option(min=0)] = 5,
    loader_workers: Annotated[int, typer.Option(min=0, help="DataLoader workers of the reference loop.")] = 2,
    design: Annotated[
        str, typer.Option(help="Which design of the space to time: all-residual, seed-pattern2, seed-pattern4.")
    ] = "seed-pattern4",
    search_workers: Annotated[
        str | None,
        typer.Option("--workers", "--search-workers",
                     help="Instead: search trials/hour with these worker-process counts, e.g. 1,2,4 "
                          "(a fresh --search-trials study of the quick recipe each, in a temporary journal file)."),
    ] = None,
    search_trials: Annotated[int, typer.Option(min=1, help="Trials per worker count with --workers.")] = 8,
    precision: Annotated[
        str, typer.Option(help="Fast loop: auto (a timed probe decides) | fp32 | bf16.")
    ] = "auto",
    channels_last: Annotated[str, typer.Option(help="Fast loop: auto | on | off.")] = "auto",
    compile_: Annotated[
        str, typer.Option("--compile", help="Fast loop: auto (only if the timed steps repay it) | on | off.")
    ] = "auto",
    precision_accuracy: Annotated[
        int | None,
        typer.Option("--precision-accuracy", metavar="SEEDS",
                     help="Instead: train the quick recipe's design in fp32 and in bf16 on SEEDS seeds each and "
                          "compare the validation accuracies (does bf16 cost accuracy?).", min=2),
    ] = None,
) -> None:
    """Images/s of the fast proxy loop vs a plain DataLoader loop; with --workers, search trials/hour.

    Same model and data for both loops. --workers 1,2,4 instead runs a fresh quick-recipe study per
    worker count and prints trials/hour and the speed-up.
    """
    from resattn.training.bench import format_bench, run_bench

    setup_logging(False)
    if precision_accuracy is not None:
        _precision_accuracy(precision_accuracy, dataset, device, design)
        return
    if search_workers is not None:
        _scaling_bench(search_workers, search_trials, dataset, device)
        return
    from resattn.training.config import TrainConfig

    config = guard(lambda: TrainConfig(precision=precision, channels_last=channels_last, compile=compile_))
    spec, ds, dev = guard(lambda: _bench_inputs(space, dataset, device, design))
    out_console.print(f"bench: design {design} of space {space}, dataset {dataset}, device {dev}")
    result = guard(
        lambda: run_bench(spec, ds, device=dev, batch_size=batch_size, steps=steps,
                          warmup_steps=warmup_steps, num_workers=loader_workers, config=config)
    )
    out_console.print(format_bench(result))


def _precision_accuracy(seeds: int, dataset: str, device: str, design: str) -> None:
    import dataclasses

    import optuna

    from resattn.analysis.statistics import mean_ci, paired_difference
    from resattn.study.objective import prepare_data
    from resattn.study.space import baseline_designs, sample
    from resattn.training.bench import run_precision_accuracy
    from resattn.training.loop import resolve_device

    space_obj, recipe_obj = guard(lambda: load_inputs(None, "quick", [f"data.dataset={dataset}"]))
    designs = dict(baseline_designs(space_obj))
    if design not in designs:
        raise fail(f"--design: {design!r} is not expressible in the quick space; allowed: {', '.join(designs)}")
    dev = guard(lambda: resolve_device(device))
    _, data = guard(lambda: prepare_data(recipe_obj, dev))
    spec = sample(optuna.trial.FixedTrial(designs[design]), space_obj, num_classes=data.num_classes)
    config = dataclasses.replace(recipe_obj.train, channels_last="off")
    out_console.print(f"bench: design {design} of the quick space, the quick recipe ({recipe_obj.train.epochs} "
                      f"epochs, {len(data.train)} training / {len(data.val)} validation images), fp32 vs bf16, "
                      f"{seeds} seeds, device {dev}")
    result = guard(lambda: run_precision_accuracy(spec, data.train, data.val, config, device=dev, mean=data.mean,
                                                  std=data.std, seeds=seeds))
    out_console.print(f"{'seed':>4}  {'fp32':>7}  {'bf16':>7}")
    for seed, a, b in zip(result.seeds, result.fp32, result.bf16, strict=True):
        out_console.print(f"{seed:>4}  {a:>7.4f}  {b:>7.4f}")
    for name, values in (("fp32", result.fp32), ("bf16", result.bf16)):
        s = mean_ci(values)
        sd = (sum((v - s.mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        out_console.print(f"{name}: mean {s.mean:.4f}, seed-to-seed sd {sd:.4f}, 95% CI [{s.low:.4f}, {s.high:.4f}], "
                          f"{result.seconds[name]:.0f} s of training")
    d = paired_difference(list(result.bf16), list(result.fp32))
    out_console.print(f"bf16 - fp32 (paired by seed): {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}], p = {d.p:.2g}")


def _scaling_bench(counts: str, trials: int, dataset: str, device: str) -> None:
    from resattn.study.scaling import format_scaling, run_scaling_bench

    try:
        numbers = [int(c) for c in counts.split(",") if c.strip()]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise fail(f"--workers: comma-separated positive integers, got {counts!r}")
    overrides = [f"data.dataset={dataset}", "train.epochs=2", "data.train_images=500", "train.batch_size=64"]
    space_obj, recipe_obj = guard(lambda: load_inputs(None, "quick", overrides))
    out_console.print(f"bench: {trials} trials of the quick recipe ({', '.join(overrides)}) per worker count, "
                      f"device {device}, journal-file storage")
    rows = guard(lambda: run_scaling_bench(space_obj, recipe_obj, numbers, trials=trials, device=device))
    out_console.print(format_scaling(rows))


def _bench_inputs(space: str, dataset: str, device: str, design: str) -> tuple[Any, Any, Any]:
    import optuna

    from resattn.study.space import baseline_designs, load_space, sample
    from resattn.training.data import load_dataset
    from resattn.training.loop import resolve_device

    space_obj = load_space(resolve_file(space, "space"))
    designs = dict(baseline_designs(space_obj))
    if design not in designs:
        raise ConfigError(f"design {design!r} is not expressible in this space; allowed: {', '.join(designs)}",
                          key="--design")
    ds = load_dataset(dataset)
    study = optuna.create_study()
    study.enqueue_trial(designs[design])
    spec = sample(study.ask(), space_obj, num_classes=ds.num_classes)
    return spec, ds, resolve_device(device)
