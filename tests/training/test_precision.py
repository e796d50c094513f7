"""resattn.training.precision: precision, memory format and compile are chosen by measurement, with the
measurement cached per process and shape family; compile falls back to eager; trials record the choice.
No test depends on timing: the probe's timer is replaced by fixed rates."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
import pytest
import torch

import resattn
from resattn import BlockSpec, NetSpec
from resattn.study import keys
from resattn.training import precision as P
from resattn.training.config import TrainConfig
from resattn.training.data import ImageData
from resattn.training.loop import train
from tests.helpers import tiny_search


@pytest.fixture(autouse=True)
def fresh_cache():
    P.clear_cache()
    yield
    P.clear_cache()


def _net(attention: str = "se") -> torch.nn.Module:
    return resattn.build(NetSpec(stem_channels=8, layers=(BlockSpec("pattern2", 8, attention=attention),)))


class FakeTimer:
    """Images/s per (bf16, channels_last), and a record of what was timed."""

    def __init__(self, rates: dict[tuple[bool, bool], float]):
        self.rates = rates
        self.calls: list[tuple[bool, bool]] = []

    def __call__(self, model, device, batch_shape, num_classes, bf16, channels_last, steps=2) -> float:
        self.calls.append((bf16, channels_last))
        return self.rates[(bf16, channels_last)]


CPU = torch.device("cpu")
SHAPE = (32, 3, 16, 16)


def _choose(config: TrainConfig, timer: FakeTimer, model=None, steps: int = 10, shape=SHAPE) -> P.Execution:
    return P.choose_execution(model or _net(), config, CPU, shape, 10, steps=steps, timer=timer)


def test_auto_picks_bf16_where_the_probe_shows_it_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "bf16_supported", lambda device: True)
    timer = FakeTimer({(False, False): 100.0, (False, True): 120.0, (True, False): 250.0, (True, True): 300.0})
    ex = _choose(TrainConfig(), timer)
    assert (ex.precision, ex.channels_last, ex.compile) == ("bf16", True, False)
    # staged: both layouts of bf16, then fp32 in bf16's best layout only
    assert timer.calls == [(True, False), (True, True), (False, True)]
    assert "bf16+channels_last 300 img/s" in ex.why and ex.rate == 300.0


def test_bf16_needs_a_real_margin_and_channels_last_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "bf16_supported", lambda device: True)
    timer = FakeTimer({(False, False): 100.0, (False, True): 101.0, (True, False): 105.0, (True, True): 106.0})
    ex = _choose(TrainConfig(), timer)
    assert (ex.precision, ex.channels_last) == ("fp32", False)  # 5 % and 1 % are within the noise


def test_a_cpu_without_bf16_is_never_probed_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "bf16_supported", lambda device: False)
    timer = FakeTimer({(False, False): 100.0, (False, True): 150.0})
    ex = _choose(TrainConfig(), timer)
    assert (ex.precision, ex.channels_last) == ("fp32", True)
    assert all(not bf16 for bf16, _ in timer.calls)
    timer = FakeTimer({})
    ex = _choose(TrainConfig(channels_last="off"), timer)
    assert ex.precision == "fp32" and not ex.channels_last and timer.calls == []
    assert "no native bf16" in ex.why


def test_explicit_settings_are_obeyed_without_a_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "bf16_supported", lambda device: True)
    timer = FakeTimer({})
    ex = _choose(TrainConfig(precision="bf16", channels_last="on", compile="off"), timer)
    assert (ex.precision, ex.channels_last, ex.compile, timer.calls) == ("bf16", True, False, [])
    ex = _choose(TrainConfig(precision="fp32", channels_last="off", compile="on"), timer)
    assert (ex.precision, ex.channels_last, ex.compile, ex.why) == ("fp32", False, True, "as configured")
    timer = FakeTimer({(False, False): 100.0, (False, True): 90.0})
    ex = _choose(TrainConfig(precision="fp32"), timer)  # the memory format is still measured
    assert timer.calls == [(False, False), (False, True)] and not ex.channels_last


def test_cuda_with_bf16_support_picks_bf16_without_timing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "bf16_supported", lambda device: True)
    timer = FakeTimer({(True, False): 1000.0, (True, True): 1500.0})
    ex = P.choose_execution(_net(), TrainConfig(), torch.device("cuda"), SHAPE, 10, steps=10, timer=timer)
    assert ex.precision == "bf16" and ex.channels_last and timer.calls == [(True, False), (True, True)]


def test_the_probe_is_cached_per_shape_family_and_the_layout_per_attention_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(P, "bf16_supported", lambda device: True)
    rates = {(False, False): 100.0, (False, True): 120.0, (True, False): 250.0, (True, True): 300.0}
    timer = FakeTimer(rates)
    first = _choose(TrainConfig(), timer, model=_net("se"))
    assert first.probe_seconds >= 0 and len(timer.calls) == 3 and first.channels_last
    again = _choose(TrainConfig(), timer, model=_net("se"))  # the same network: nothing timed
    assert len(timer.calls) == 3 and again.probe_seconds == 0.0
    assert first.why.startswith("measured: ") and again.why.startswith("probe cached")
    timer.rates = {**rates, (True, True): 200.0}  # CBAM: channels_last is slower
    cbam = _choose(TrainConfig(), timer, model=_net("cbam"))
    # the same backbone: the precision stands; only the two bf16 layouts are timed for CBAM
    assert timer.calls[3:] == [(True, False), (True, True)]
    assert cbam.precision == "bf16" and not cbam.channels_last and "for its attentions" in cbam.why
    _choose(TrainConfig(), timer, model=_net("cbam"))
    assert len(timer.calls) == 5  # cached
    _choose(TrainConfig(), timer, model=_net("se"), shape=(64, 3, 16, 16))  # another batch: probed again
    wider = resattn.build(NetSpec(stem_channels=16, layers=(BlockSpec("residual", 16),)))
    _choose(TrainConfig(), timer, model=wider)  # another backbone: probed again
    assert len(timer.calls) == 11


def test_compile_pays_only_when_the_saving_exceeds_its_cost() -> None:
    # 100 steps of 0.1 s at 1.5x: saves 100 * 0.1 * (1 - 1/1.5) = 3.3 s, less than a 25 s compile
    assert not P.compile_pays(100, 0.1, 25.0, 1.5)
    # 3000 steps: saves 100 s > 1.2 * 25 s
    assert P.compile_pays(3000, 0.1, 25.0, 1.5)
    assert not P.compile_pays(10**6, 0.1, 25.0, 1.0)  # no speed-up, no compile
    assert not P.compile_pays(0, 0.1, 1.0, 2.0)


def test_compile_auto_uses_the_prior_then_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "bf16_supported", lambda device: False)
    timer = FakeTimer({(False, False): 320.0, (False, True): 320.0})  # 0.1 s per 32-image step
    assert not _choose(TrainConfig(), timer, steps=100).compile  # a short proxy does not repay 25 s
    assert _choose(TrainConfig(), timer, steps=5000).compile  # a long training does
    model = _net()
    ex = _choose(TrainConfig(), timer, model=model, steps=5000)
    P.record_compile(model, CPU, SHAPE, ex, compile_seconds=600.0, eager_step=0.1, compiled_step=0.09)
    assert not _choose(TrainConfig(), timer, model=model, steps=5000).compile  # measured: it does not pay here


def _tiny_data(n: int = 70) -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g))


def _train(config: TrainConfig, model=None):
    model = model or _net()
    data = _tiny_data()
    return train(model, data, data, config, device="cpu", mean=(0.5,) * 3, std=(0.25,) * 3)


def test_a_failing_compile_falls_back_to_eager_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_compile(model, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("inductor: no C++ compiler\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    config = TrainConfig(epochs=2, batch_size=32, lr=0.05, precision="fp32", channels_last="off", compile="on")
    with caplog.at_level(logging.WARNING, logger="resattn.training.precision"):
        result = _train(config)
        _train(config)  # a second run warns no more
    assert result.epochs_run == 2 and result.val_accuracy is not None
    assert result.execution is not None and not result.execution.compile
    warnings = [r for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(warnings) == 1 and "no C++ compiler" in warnings[0].getMessage()


def test_compiled_training_sees_one_batch_shape_so_nothing_recompiles(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []

    def recording_compile(model, **kwargs):
        assert kwargs.get("dynamic") is False

        def run(x):
            shapes.append(tuple(x.shape))
            return model(x)
        return run

    monkeypatch.setattr(torch, "compile", recording_compile)
    config = TrainConfig(epochs=3, batch_size=32, lr=0.05, precision="fp32", channels_last="off", compile="on")
    result = _train(config)  # 70 images: two full batches, the partial third is dropped
    assert set(shapes) == {(32, 3, 16, 16)} and len(shapes) == 6
    assert [r.images for r in result.history] == [64, 64, 64]
    assert result.execution.compile and result.compile_seconds >= 0


def test_evaluation_counts_exactly_under_bf16() -> None:
    config = TrainConfig(epochs=1, batch_size=32, lr=0.05, precision="bf16", channels_last="off", compile="off")
    result = _train(config)
    assert result.execution.precision == "bf16"
    assert result.val_correct is not None and result.val_correct.dtype == torch.bool
    assert result.val_accuracy == int(result.val_correct.sum()) / 70


def test_trials_record_what_was_chosen(tmp_path: Path, cifar_npz: Path) -> None:
    db, code, out = tiny_search(tmp_path, cifar_npz, 2)
    assert code == 0, out
    study = optuna.load_study(study_name="tiny-quick", storage=f"sqlite:///{db}")
    for t in study.trials:
        assert t.user_attrs[keys.PRECISION] in ("bf16", "fp32"), t.user_attrs
        assert isinstance(t.user_attrs[keys.CHANNELS_LAST], bool)
        assert t.user_attrs[keys.COMPILED] is False  # a 2-epoch proxy never repays a compile


def test_old_recipe_keys_still_read() -> None:
    assert TrainConfig(bf16=True).precision == "auto" and TrainConfig(bf16=False).precision == "fp32"
    assert TrainConfig(channels_last=True).channels_last == "auto"
    assert TrainConfig(channels_last=False).channels_last == "off"
    from resattn.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed: auto, fp32, bf16"):
        TrainConfig(precision="fp16")
    with pytest.raises(ConfigError, match="precision only"):
        TrainConfig(precision="fp32", bf16=True)


def test_the_probe_persists_on_disk_per_machine_and_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "probe.json"
    monkeypatch.setenv(P.PROBE_CACHE_ENV, str(cache))
    monkeypatch.setattr(P, "bf16_supported", lambda device: True)
    calls: list[tuple[bool, bool]] = []

    def timed(model, device, batch_shape, num_classes, bf16, channels_last, steps=2):
        calls.append((bf16, channels_last))
        return {(True, False): 250.0, (True, True): 300.0, (False, True): 100.0}[(bf16, channels_last)]

    monkeypatch.setattr(P, "_time_variant", timed)  # the real path (no timer argument), without timing
    first = P.choose_execution(_net(), TrainConfig(), CPU, SHAPE, 10, steps=10)
    assert first.precision == "bf16" and len(calls) == 3 and cache.is_file()
    P.clear_cache()  # a new process: the file answers
    again = P.choose_execution(_net(), TrainConfig(), CPU, SHAPE, 10, steps=10)
    assert (again.precision, again.channels_last, again.probe_seconds) == ("bf16", True, 0.0) and len(calls) == 3
    P.clear_cache()
    monkeypatch.setenv(P.PROBE_CACHE_ENV, "off")
    P.choose_execution(_net(), TrainConfig(), CPU, SHAPE, 10, steps=10)
    assert len(calls) == 6
    P.clear_cache()
    cache.write_text("{not json")  # a broken cache is no cache
    monkeypatch.setenv(P.PROBE_CACHE_ENV, str(cache))
    assert P.choose_execution(_net(), TrainConfig(), CPU, SHAPE, 10, steps=10).precision == "bf16"
