from __future__ import annotations

from resattn import presets
from resattn.study.notes import COLUMNS, placement_rows, trial_note


def test_pattern4_note_shows_both_attentions_and_gates():
    spec = presets.seed_pattern4()
    rows = placement_rows(spec, slots=["p4_1", "p4_2"])
    assert [r[0] for r in rows] == ["p4_1", "p4_2"]
    row = dict(zip(COLUMNS, rows[0], strict=True))
    assert row["kind"] == "pattern4"
    assert row["attention(s)"] == "skip se / res se"
    assert row["reduction"] == "16/16"
    assert row["γ_s"] == "0" and row["γ_r"] == "0.1" and row["λ"] == ""
    assert row["norm"] == "bn"


def test_mix_note_shows_lambda_and_fixed_flag():
    spec = presets.seed_pattern2_mix(lam=0.25)
    from dataclasses import replace

    layers = tuple(replace(b, lam_learnable=False) if b.kind == "pattern2_mix" else b for b in spec.layers)
    spec = replace(spec, layers=layers)
    row = dict(zip(COLUMNS, placement_rows(spec, slots=["p2_1"])[0], strict=True))
    assert row["λ"] == "0.25 (fixed)"
    assert row["attention(s)"] == "cbam k7"


def test_note_is_a_markdown_table_with_params_and_flops():
    spec = presets.seed_pattern2()
    note = trial_note(spec, params=475374, flops=383714816, design="seed-pattern2")
    lines = note.splitlines()
    assert "475,374" in note and "383.7 M" in note and "seed-pattern2" in note
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(spec.layers)  # header, rule, one row per layer
    assert all(line.count("|") == len(COLUMNS) + 1 for line in table)
