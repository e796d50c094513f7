"""resattn confirm: paired seeds, racing, statistics into a verdict, resumption, and the confirmed
winner used downstream."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import optuna
import pytest
import torch

import resattn
from resattn import BlockSpec, NetSpec
from resattn.analysis import confirm as C
from resattn.cli.main import main
from resattn.training.config import TrainConfig
from resattn.training.data import ImageData
from resattn.training.loop import GpuBatches
from tests.helpers import tiny_search


def _cand(label: str, digest: str, design: str | None = None, trial: int = 0) -> C.Candidate:
    spec = NetSpec(stem_channels=4, layers=(BlockSpec("residual", 4),))
    return C.Candidate(label=label, trial=trial, arch_hash=digest, placement=(), spec=spec, design=design)


def test_racing_drops_a_clear_loser_after_three_seeds_but_never_the_baseline() -> None:
    values = {
        "lead": [0.60, 0.62, 0.61, 0.63, None],
        "close": [0.60, 0.61, 0.62, 0.62, None],
        "loser": [0.40, 0.41, 0.40, None, None],  # 20 points behind on every seed
        "base": [0.30, 0.31, 0.30, 0.31, None],  # the baseline, worse still: never dropped
    }
    assert C.race(values, {"base"}, rounds=2) == {}  # too few seeds to race
    out = C.race(values, {"base"}, rounds=3)
    assert out == {"loser": 3} and "close" not in out


def test_summary_verdicts_win_and_tie() -> None:
    base, a, b = _cand("all-residual", "h0", "all-residual", 0), _cand("s1 pattern2[eca]", "h1", None, 1), \
        _cand("s1 pattern1[se]", "h2", None, 2)
    win = C.summarise("s", [a, b, base], {
        "h0": [0.50, 0.52, 0.51, 0.49, 0.50],
        "h1": [0.53, 0.56, 0.54, 0.52, 0.54],  # +3 or +4 points on every seed: +3.4 on average
        "h2": [0.50, 0.53, 0.50, 0.50, 0.49],
    }, {}, [0, 1, 2, 3, 4], epochs=2, images=100)
    assert win.verdict.startswith("s1 pattern2[eca] beats all-residual by +3.4 points [")
    assert "(p = " in win.verdict and "5 seeds)" in win.verdict
    assert win.winner == 1 and "confirmed" in win.winner_reason
    top = win.candidates[0]
    assert top.candidate.label == "s1 pattern2[eca]" and top.p_best > 0.9 and top.delta.low > 0

    tie = C.summarise("s", [a, base], {"h0": [0.5, 0.6, 0.7], "h1": [0.5, 0.6, 0.7]}, {}, [0, 1, 2],
                      epochs=2, images=100)
    assert tie.verdict.startswith("no placement is distinguishable from all-residual")
    assert tie.winner == 0 and "simplest" in tie.winner_reason


def test_paired_seeds_share_initial_weights_and_batches() -> None:
    se = resattn.build(NetSpec(stem_channels=8, layers=(BlockSpec("pattern2", 8, attention="se", name="s1"),)))
    eca = resattn.build(NetSpec(stem_channels=8, layers=(BlockSpec("pattern1", 8, attention="eca", name="s1"),)))
    C.paired_init(se, 3)
    C.paired_init(eca, 3)
    a, b = se.state_dict(), eca.state_dict()
    shared = [k for k in a if k in b and a[k].shape == b[k].shape]
    assert "stem.conv.weight" in shared and "layers.s1.branch.conv1.weight" in shared and "head.weight" in shared
    for k in shared:
        assert torch.equal(a[k], b[k]), k
    other = resattn.build(se.spec)
    C.paired_init(other, 4)  # another seed: other weights
    assert not torch.equal(other.state_dict()["stem.conv.weight"], a["stem.conv.weight"])
    g = torch.Generator().manual_seed(0)
    data = ImageData(torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (40,), generator=g))
    config = TrainConfig(seed=3)

    def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(GpuBatches(data, batch_size=16, device="cpu", mean=(0.5,) * 3, std=(0.2,) * 3, shuffle=True,
                               crop_padding=2, flip=True, seed=config.seed))

    for (x1, y1), (x2, y2) in zip(batches(), batches(), strict=True):  # same order and augmentation draws
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def _run(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as e:
        main(args)
    return (e.value.code if isinstance(e.value.code, int) else 0), out.getvalue()


def test_confirm_end_to_end_json_resume_and_export(tmp_path: Path, cifar_npz: Path) -> None:
    db, code, out = tiny_search(tmp_path, cifar_npz, 6, "--set", "search.pruner=none")
    assert code == 0, out
    url = f"sqlite:///{db}"
    args = ["confirm", "--storage", url, "--top", "2", "--seeds", "3", "--epochs", "1", "--images", "120",
            "--device", "cpu", "--json"]
    code, out = _run(args)
    assert code == 0, out
    report = json.loads(out)
    assert set(report) >= {"study", "seeds", "baseline", "candidates", "verdict"}
    assert report["seeds"] == [0, 1, 2] and report["baseline"] == "all-residual"
    for c in report["candidates"]:
        assert set(c) >= {"label", "trial", "arch_hash", "placement", "accuracy", "mean", "ci95", "p_best",
                          "eliminated_after"}
        assert len(c["accuracy"]) == 3 and len(c["ci95"]) == 2
        if c["label"] == "all-residual":
            assert "delta" not in c
        else:
            assert set(c["delta"]) >= {"mean", "ci95", "p", "p_holm"}
    study = optuna.load_study(study_name="tiny-quick", storage=url)
    stored = [k for k in study.user_attrs if k.startswith("resattn.confirm.") and not k.endswith("summary")]
    trained = sum(v is not None for c in report["candidates"] for v in c["accuracy"])
    assert len(stored) == trained and all("correct" in study.user_attrs[k] for k in stored)

    code, again = _run(args)  # a second run trains nothing
    assert code == 0 and json.loads(again)["trained"] == 0 and json.loads(again)["reused"] == trained

    code, out = _run(["export", "--storage", url, "--best", "--out", str(tmp_path / "w.py")])
    assert code == 0 and f"exporting trial {report['winner']}: the confirmed answer" in out
    assert f"trial:        {report['winner']}" in (tmp_path / "w.py").read_text() or \
        f"trial: {report['winner']}" in (tmp_path / "w.py").read_text()
    # the report's export line names the confirmed answer, not the proxy's best
    from resattn.analysis.report import _html_page

    page = _html_page(optuna.load_study(study_name="tiny-quick", storage=url), [], url)
    assert f"Export the confirmed answer (trial {report['winner']}, " in page and " --best --out " in page


def test_labels_name_slots_kinds_and_attentions_and_gates_on_request() -> None:
    placement = ("s1=pattern2[eca]", "s2=pattern4[se/r16|se/r16 γs=0 γr=0.169]", "s3=residual")
    assert C.short_label(placement) == "s1 pattern2[eca] + s2 pattern4[se|se] + s3 residual"
    assert C.short_label(placement, gates=True) == (
        "s1 pattern2[eca] + s2 pattern4[se|se γs=0 γr=0.169] + s3 residual")
    assert C.short_label(("s1=pattern2_mix[cbam/r16/k7 λ=0.2]",), gates=True) == "s1 pattern2_mix[cbam λ=0.2]"


def test_the_dashboard_figure_names_candidates_by_trial_and_keeps_placements_in_the_hover() -> None:
    report = {
        "baseline": "all-residual", "verdict": "s1 pattern2[eca] + s2 pattern4[se|se γs=0 γr=0.155] beats "
                                               "all-residual by +3.1 points [+1.0, +5.3] (p = 0.044, 5 seeds)",
        "candidates": [
            {"label": "s1 pattern2[eca]", "trial": 14, "design": None, "mean": 0.578, "ci95": [0.566, 0.59],
             "delta": {"mean": 0.031, "ci95": [0.01, 0.053]}},
            {"label": "all-residual", "trial": 0, "design": "all-residual", "mean": 0.547, "ci95": [0.534, 0.559]},
        ],
    }
    wide, compact = C.interval_figure(report), C.interval_figure(report, compact=True)
    assert list(wide.data[0].y) == ["all-residual (#0)", "s1 pattern2[eca] (#14)"]
    assert list(compact.data[0].y) == ["#0 all-residual", "#14"]
    assert list(compact.data[0].hovertext) == list(wide.data[0].y)
    assert "<br>" in compact.layout.title.text and "<br>" not in wide.layout.title.text
    assert list(compact.data[1].x)[1] == pytest.approx(3.1)  # the difference, in points


def test_the_study_note_gives_the_verdict_the_answer_and_the_table_and_spares_a_users_note(tmp_path: Path) -> None:
    from optuna_dashboard import save_note
    from optuna_dashboard._note import get_note_from_system_attrs

    report = {
        "seeds": [0, 1, 2], "epochs": 8, "baseline": "all-residual", "winner": 14,
        "winner_reason": "confirmed: beats all-residual significantly", "verdict": "X beats all-residual",
        "candidates": [
            {"label": "s2 pattern4[se|se]", "trial": 14, "accuracy": [0.58, 0.57, 0.59], "mean": 0.58,
             "ci95": [0.566, 0.59], "p_best": 0.9,
             "delta": {"mean": 0.031, "ci95": [0.01, 0.053], "p": 0.01, "p_holm": 0.02}},
            {"label": "all-residual", "trial": 0, "accuracy": [0.55, 0.54, None], "mean": 0.545,
             "ci95": [0.53, 0.56], "p_best": 0.1},
        ],
    }
    text = C.study_note(report)
    assert "**Verdict:** X beats all-residual" in text and "**The answer:** trial 14" in text
    assert "| 14 | s2 pattern4[se\\|se] | 3 | 58.0 | [56.6, 59.0] | +3.1 | [+1.0, +5.3] | 0.02 | 0.90 |" in text
    assert "| 0 | all-residual | 2 | 54.5 | [53.0, 56.0] | baseline |  |  | 0.10 |" in text

    def note(study: optuna.Study) -> str:
        return get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'n.db'}", direction="maximize")
    assert C._own_or_no_study_note(study)  # no note yet
    save_note(study, text)
    assert C._own_or_no_study_note(study)  # an earlier confirmation's: replaced
    save_note(study, "my own notes on this study")
    assert not C._own_or_no_study_note(study) and note(study) == "my own notes on this study"
