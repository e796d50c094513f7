"""`resattn dashboard` / `studies` / `show` / `report` on a real quick study."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from resattn.cli.inspect import make_dashboard_server
from resattn.cli.main import main
from resattn.study.records import summarize
from tests.helpers import STUDY, serve_dashboard, url

pytestmark = pytest.mark.slow  # a real (tiny) search trains models


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
    return code, out, err


def get_json(address: str, path: str) -> dict:
    with urllib.request.urlopen(f"{address}{path}", timeout=30) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def check_dashboard_api(address: str, db: Path) -> None:
    studies = get_json(address, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [STUDY]
    detail = get_json(address, f"/api/studies/{studies[0]['study_id']}")
    study = optuna.load_study(study_name=STUDY, storage=url(db))
    assert len(detail["trials"]) == len(study.trials)
    bodies = [t["note"]["body"] for t in detail["trials"]]
    # Every trial carries its placement table as a dashboard note.
    assert all("| slot | kind | attention(s) |" in b for b in bodies)
    assert any("| s1 | pattern4 |" in b for b in bodies)
    # Every COMPLETE trial offers its standalone model file for download (an artifact).
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert complete and all(t["artifacts"] and t["artifacts"][0]["filename"].endswith(".py") for t in complete)
    first = complete[0]
    path = f"/artifacts/{studies[0]['study_id']}/{first['trial_id']}/{first['artifacts'][0]['artifact_id']}"
    with urllib.request.urlopen(address + path, timeout=30) as response:
        assert b"def build_model" in response.read()


def test_dashboard_server_in_a_thread(inspect_db):
    server = make_dashboard_server(url(inspect_db), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        check_dashboard_api(f"http://{host}:{port}", inspect_db)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_dashboard_command_prints_address_and_stops_on_ctrl_c(inspect_db):
    def serves(line: str) -> None:
        assert "http://127.0.0.1:" in line, line
        address = line.split("http://", 1)[1].split("/", 1)[0]
        check_dashboard_api(f"http://{address}", inspect_db)

    _, err, code = serve_dashboard(["--storage", url(inspect_db), "--port", "0"], serves)
    assert code in (0, 130), err
    assert "Traceback" not in err


def test_dashboard_bad_storage_exits_2(capsys, tmp_path):
    code, _, err = run_cli(["dashboard", "--storage", "nosuch://x", "--port", "0"], capsys)
    assert code == 2 and err.startswith("error:")
    code, _, err = run_cli(["dashboard", "--storage", f"sqlite:///{tmp_path / 'none.db'}", "--port", "0"], capsys)
    assert code == 2 and "no such file" in err


def test_studies_table(inspect_db, capsys):
    code, out, err = run_cli(["studies", "--storage", url(inspect_db)], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name=STUDY, storage=url(inspect_db))
    duplicates = sum(t.user_attrs.get("duplicate_of") is not None for t in study.trials)
    counts = [sum(t.state == s for t in study.trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                  TrialState.FAIL)]
    row = next(line for line in out.splitlines() if STUDY in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:5] == [STUDY, str(counts[0] - duplicates), str(duplicates), str(counts[1]), str(counts[2])]
    assert cells[5:7] == ["0", "0"]  # running, queued
    assert cells[7] == f"{study.best_value:.4f}" and cells[8:10] == ["quick", "quick"]


def test_queued_trials_are_shown_as_queued_not_running(tmp_path, capsys):
    from resattn.cli.common import load_inputs
    from resattn.study.setup import open_study
    from resattn.study.storage import open_storage

    db = tmp_path / "new.db"
    space, recipe = load_inputs(None, "quick", [])
    open_study(open_storage(url(db)), "fresh", space, recipe, seed=0)  # the baselines, queued
    code, out, err = run_cli(["studies", "--storage", url(db)], capsys)
    assert code == 0, err
    row = next(line for line in out.splitlines() if "fresh" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[1:7] == ["0", "0", "0", "0", "0", "3"]  # complete, duplicates, pruned, failed, running, queued


def test_show_lists_best_trials_and_export_commands(inspect_db, capsys):
    code, out, err = run_cli(["show", "--storage", url(inspect_db), "--top", "3"], capsys)
    assert code == 0, err
    study = optuna.load_study(study_name=STUDY, storage=url(inspect_db))
    top = summarize(study, top_k=3)["top"]
    assert len(top) == 3
    for t in top:
        assert f"resattn export --storage {url(inspect_db)} --study {STUDY} --trial {t.number} " \
               "--out studies/winner.py" in out
        assert t.placement[0] in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert [int(r.strip("│ ").split("│")[0]) for r in rows] == [t.number for t in top]
    assert "standard error of about" in out and "not confirmed: resattn confirm" in out


def test_show_compare_runs_mcnemar_on_the_stored_per_image_results(inspect_db, capsys):
    study = optuna.load_study(study_name=STUDY, storage=url(inspect_db))
    a, b = [t.number for t in summarize(study, top_k=2)["top"]]
    code, out, err = run_cli(["show", "--storage", url(inspect_db), "--compare", str(a), str(b)], capsys)
    assert code == 0, err
    assert f"trial {a}:" in out and "McNemar exact p = " in out and "validation images" in out
    pruned = next(t.number for t in study.trials if t.state.name == "PRUNED")
    code, out, err = run_cli(["show", "--storage", url(inspect_db), "--compare", str(a), str(pruned)], capsys)
    assert code == 2 and "no per-image result" in err and "Traceback" not in err


def test_show_and_report_need_a_study_name_when_there_are_several(tmp_path, capsys):
    db = tmp_path / "two.db"
    for name in ("alpha", "beta"):
        optuna.create_study(study_name=name, storage=url(db))
    for cmd in ("show", "report"):
        code, _, err = run_cli([cmd, "--storage", url(db)], capsys)
        assert code == 2 and "'alpha', 'beta'" in err
    code, _, err = run_cli(["show", "--storage", url(db), "--study", "gamma"], capsys)
    assert code == 2 and "no study 'gamma'" in err


def test_report_default_folder(inspect_db, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["report", "--storage", url(inspect_db)], capsys)
    assert code == 0, err
    folder = tmp_path / "studies" / f"report-{STUDY}"
    assert (folder / "report.html").stat().st_size > 1_000_000
    for name in ("placement-map", "history", "importances", "pareto", "pruning"):
        assert (folder / f"{name}.png").stat().st_size > 10_000
        assert f"{name}: studies/report-{STUDY}/{name}.png" in out
    assert "placement-map: Per slot, by mean val accuracy" in out
    assert "epochs trained in total" in out


def test_report_of_a_one_trial_study(tmp_path, capsys):
    db = tmp_path / "one.db"
    study = optuna.create_study(study_name="one", storage=url(db), direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.4))
    code, out, err = run_cli(["report", "--storage", url(db), "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    assert "a report needs at least 2" in out
    assert not (tmp_path / "rep").exists()
