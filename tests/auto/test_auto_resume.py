"""Anytime: Ctrl-C publishes the best complete model so far (valid for predict and report) and --resume continues
its search; a killed run keeps its unfinished folder and --resume finishes it there. Either way the run that
continues ends at least as good as what was finished before."""

from __future__ import annotations

import signal
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer

from pipeline.cli import main
from pipeline.core.run_folder import RunReader
from tests.helpers.auto import auto_config, exp_dir, run_auto, scores, start_auto, statuses, steps, wait_for_steps


def best_member_score(doc: dict) -> float:
    """The best member's OOF score, oriented so that more is better."""
    sign = 1.0 if doc["greater_is_better"] else -1.0
    return sign * doc["models"][doc["best_member"]]["oof_score"]


def predict_ok(run: Path, tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    load_breast_cancer(as_frame=True).frame.drop(columns="target").head(10).to_csv(rows, index=False)
    out = tmp_path / f"{run.name}.csv"
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(out), "-q"]) == 0
    assert len(pd.read_csv(out)) == 10


def test_ctrl_c_publishes_the_best_model_so_far_and_resume_continues_its_search(tmp_path):
    config = auto_config(tmp_path, "interrupted")
    proc = start_auto(config, "--time-budget", "120s", "--max-trials", "3")
    wait_for_steps(proc, exp_dir(config), done=2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "the best complete model so far" in err and "--resume" in err and "Traceback" not in err
    run = Path(out.strip().splitlines()[-1])
    record, doc = steps(run), scores(run)
    assert record["interrupted"] and doc["budget"]["interrupted"]
    assert {"ran", "reused"} & set(statuses(run, "member").values()) and len(doc["members"]) >= 2
    assert set(statuses(run, "combiner").values()) == {"skipped"}
    RunReader(run).read_json("ensemble/weights.json")  # published whole: every file matches the manifest
    predict_ok(run, tmp_path)
    assert main(["report", "--run", str(run), "-q", "--n-boot", "100"]) == 0

    resumed = run_auto(config, "--resume", "--time-budget", "5s", "--max-trials", "6")
    after = scores(resumed)
    assert steps(resumed)["resumed_from"] == run.name and steps(resumed)["study"] == record["study"]
    assert set(doc["members"]) <= set(after["members"])
    assert all(statuses(resumed, "member")[name] == "reused" for name in doc["members"] if name != "lgb_tuned")
    assert best_member_score(after) >= best_member_score(doc)
    tune_steps = [s for s in steps(resumed)["steps"] if s["kind"] == "tune"]
    assert tune_steps and tune_steps[0]["trials"]["complete"] + tune_steps[0]["trials"]["pruned"] >= 4


def test_a_killed_run_resumes_in_its_own_folder_and_ends_at_least_as_good(tmp_path):
    config = auto_config(tmp_path, "killed")
    proc = start_auto(config, "--time-budget", "120s", "--max-trials", "2")
    partial = wait_for_steps(proc, exp_dir(config), done=2)
    proc.kill()
    proc.communicate(timeout=60)
    finished = {p.parent.name for p in partial.glob("members/*/member.json")}  # member.json is written last
    assert "lgb" in finished and partial.name.endswith(".partial")
    run = run_auto(config, "--resume", "--time-budget", "4s", "--max-trials", "2")
    assert run.name == partial.name.removesuffix(".partial") and not partial.exists()
    record, doc = steps(run), scores(run)
    assert record["continued_in_place"] and record["resumed_from"] is None
    kept = finished - {"lgb_tuned"}  # retrained when the resumed trials found a better one
    member_steps = [s for s in record["steps"] if s["kind"] == "member" and s["name"] in kept]
    assert all(s["status"] == "reused" and s["source"] == "resumed" for s in member_steps), member_steps
    best_before = max(doc["models"][name]["oof_score"] for name in finished)  # auc: more is better
    assert doc["models"][doc["best_model"]]["oof_score"] >= best_before
    predict_ok(run, tmp_path)
