"""`gbpipe auto` under a time budget: the clock's rule, the budget holding on a table that needs more than it,
and a budget too small for anything still leaving the default model."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.budget import Clock, TimeUp, parse_duration
from pipeline.core.errors import ConfigError
from pipeline.core.run_folder import RunReader
from tests.helpers.auto import adult_slice, auto_args, auto_config, run_auto, scores, statuses, steps

START_UP = 2.0  # seconds of fixed cost the budget cannot see: parsing arguments, first imports of a stage


@pytest.mark.parametrize(
    "text, seconds", [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1.5h", 5400.0), (" 2M ", 120.0)]
)
def test_durations_read_as_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "10 minutes", "1d", "nan", "1e3", "m"])
def test_a_bad_duration_names_the_rule_and_the_value(text):
    with pytest.raises(ConfigError, match=r"--time-budget .*: must be a positive number of seconds, or a number"):
        parse_duration(text)


def test_the_clock_admits_a_step_only_when_its_estimate_fits_and_stops_a_slow_one_between_parts():
    clock = Clock.start(10.0)
    assert clock.fits(5.0) and not clock.fits(20.0) and clock.fits(None)
    assert not clock.until(8.0).fits(5.0) and clock.capped(time.time() + 1.0).left() <= 1.0
    assert Clock.start(None).fits(1e9) and not Clock.start(None).expired()
    clock.pace("a step", time.time() - 1.0, 1, 5)  # four more parts of a second each fit in ten
    with pytest.raises(TimeUp, match=r"a step stopped after 1 of 5 folds: at 4\.0s each"):
        clock.pace("a step", time.time() - 4.0, 1, 5)
    assert Clock.start(0.0).expired() and not Clock.start(0.0).fits(None)


def test_the_budget_holds_on_a_table_that_needs_more_than_it(tmp_path):
    budget = 8.0
    config = auto_config(tmp_path, "adult_budget", adult_slice(tmp_path, 8000))
    started = time.perf_counter()
    assert main(auto_args(config, "--time-budget", f"{budget}s")) == 0
    wall = time.perf_counter() - started
    run = next(p for p in (tmp_path / "runs" / "adult_budget").iterdir() if (p / "manifest.json").is_file())
    record, doc = steps(run), scores(run)
    assert wall <= 1.1 * budget + START_UP, f"{wall:.1f}s for a {budget}s budget: {record['steps']}"
    assert record["elapsed_seconds"] <= 1.1 * budget
    skipped = [s for s in record["steps"] if s["status"] in ("skipped", "stopped")]
    assert skipped, "the table was meant to need more than the budget, yet every step fitted"
    assert {s["name"] for s in doc["budget"]["skipped"]} <= {s["name"] for s in skipped}
    assert doc["budget"]["clock_dependent"] and "depends on the clock" in doc["budget"]["reproducibility"]
    assert statuses(run, "member")["lgb"] == "ran" and doc["recommended"] in doc["models"]
    for s in record["steps"]:  # a step that ran was admitted: its estimate fitted the time left before it
        if s["status"] == "ran" and s.get("estimate_seconds") is not None and s.get("seconds") is not None:
            assert s["estimate_seconds"] <= s["left_seconds"] + s["seconds"]
    RunReader(run).read_json("ensemble/weights.json")  # every file matches the manifest


def test_a_budget_too_small_for_anything_still_leaves_the_default_model(tmp_path, capsys):
    config = auto_config(tmp_path, "tiny")
    run = run_auto(config, "--time-budget", "0.05s")  # less than the default model alone takes
    doc = scores(run)
    assert doc["members"] == ["lgb"] and doc["recommended"] == "lgb" and doc["combiners"] == []
    member_steps = statuses(run, "member")
    assert member_steps["lgb"] == "ran"
    assert set(member_steps.values()) <= {"ran", "skipped", "left out"} and "skipped" in member_steps.values()
    assert statuses(run, "combiner") and set(statuses(run, "combiner").values()) == {"skipped"}
    rows = tmp_path / "rows.csv"
    from sklearn.datasets import load_breast_cancer

    load_breast_cancer(as_frame=True).frame.drop(columns="target").head(20).to_csv(rows, index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(run), "--input", str(rows), "--output", str(out), "-q"]) == 0
    assert len(pd.read_csv(out)) == 20
    assert main(["report", "--run", str(run), "-q", "--n-boot", "100"]) == 0
    assert "skipped for time" in (run / "report" / "report.md").read_text()


def test_without_any_budget_auto_says_what_to_give(tmp_path, capsys):
    config = auto_config(tmp_path, "nobudget")
    assert main(auto_args(config)) == 2
    assert "needs a budget: --time-budget" in capsys.readouterr().err
    assert main(auto_args(config, "--time-budget", "ten")) == 2
    assert "must be a positive number of seconds" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
