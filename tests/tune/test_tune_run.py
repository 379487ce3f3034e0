"""`gbpipe tune` end to end on real adult rows: outputs, the default first trial, train --params,
reproducibility, failing trials, the fingerprint check, the lower final learning rate, bad input."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from pipeline.cli import main
from pipeline.core.run_folder import RunReader
from pipeline.tune.evaluator import Evaluation
from pipeline.tune.study import EXCLUDED_ATTR, REASON_ATTR, budget_of, counts_toward_budget, this_worker
from pipeline.tune.trials import TrialPlan, run_one, run_trials
from tests.helpers.tune import journal_trials, study_dir, tune_config


def tune_cli(config, *args: str) -> int:
    return main(["tune", "--config", str(config), "-q", *args])


def train_oof_score(config, run_id: str, *args: str) -> float:
    assert main(["train", "--config", str(config), "-q", "--run-id", run_id, *args]) == 0
    return json.loads((config.parent / "runs" / config.stem / run_id / "scores.json").read_text())["oof_score"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, adult):
    """One finished study (6 trials, plots on) shared by the read-only tests below; its model's
    min_data_in_leaf lies outside the default range, which widens to hold it."""
    tmp = tmp_path_factory.mktemp("tuned")
    config = tune_config(tmp, adult, params={"learning_rate": 0.2, "min_data_in_leaf": 45}, plots=True)
    assert tune_cli(config, "--n-trials", "6") == 0
    return config


def test_outputs_are_complete_and_verified_by_the_manifest(tuned):
    folder = study_dir(tuned)
    reader = RunReader(folder)
    assert set(reader.files) == {
        "best_params.json",
        "trials.parquet",
        "tune.json",
        "plots/optimization_history.png",
        "plots/param_importances.png",
        "plots/slice.png",
    }
    for name in reader.files:
        data = reader.read_bytes(name)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" if name.endswith(".png") else len(data) > 100
    trials = reader.read_parquet("trials.parquet")
    summary, best = reader.read_json("tune.json"), reader.read_json("best_params.json")
    assert list(trials["number"]) == list(range(6)) and trials["counted"].all()
    assert summary["n_finished"] == 6 and summary["counts"]["complete"] + summary["counts"]["pruned"] == 6
    complete = trials[trials["state"] == "COMPLETE"]
    assert best["value"] == complete["value"].max() == summary["best"]["value"]
    assert best["params"]["learning_rate"] == 0.2 and set(summary["search_space"]) <= set(best["params"])
    assert best["metric"] == "auc" and len(best["fold_scores"]) == 3
    assert (folder / "study.journal").is_file()


def test_first_trial_is_the_untuned_model_and_train_reproduces_the_best(tuned):
    """Tuning never ends worse than not tuning: trial 0 is the untuned model's exact OOF score."""
    folder = study_dir(tuned)
    summary = json.loads((folder / "tune.json").read_text())
    best = json.loads((folder / "best_params.json").read_text())
    assert summary["default_trial"]["trial"] == 0 and summary["default_trial"]["params"]["min_data_in_leaf"] == 45
    assert summary["search_space"]["min_data_in_leaf"] == "int 10..45"
    untuned = train_oof_score(tuned, "untuned")
    assert summary["default_trial"]["value"] == pytest.approx(untuned, abs=1e-12)
    assert best["value"] >= untuned
    tuned_score = train_oof_score(tuned, "tuned", "--params", str(folder / "best_params.json"))
    assert tuned_score == pytest.approx(best["value"], abs=1e-12)


def test_same_seed_and_trial_count_give_the_same_trials(tmp_path, adult):
    config = tune_config(tmp_path, adult)
    for name in ("a", "b"):
        assert tune_cli(config, "--n-trials", "6", "--study-name", name) == 0
    assert tune_cli(config, "--n-trials", "6", "--study-name", "c", "--set", "tune.seed=7") == 0
    frames = {n: pd.read_parquet(study_dir(config, n) / "trials.parquet") for n in "abc"}
    columns = ["state", "value"] + [c for c in frames["a"] if c.startswith("param_")]
    pd.testing.assert_frame_equal(frames["a"][columns], frames["b"][columns])
    best = {n: json.loads((study_dir(config, n) / "best_params.json").read_text())["params"] for n in "abc"}
    assert best["a"] == best["b"]
    assert not frames["a"][columns].iloc[1:].equals(frames["c"][columns].iloc[1:])  # the seed does matter


def test_batched_trials_are_proposed_before_any_is_told_and_reproducibly(tmp_path, adult):
    config = tune_config(tmp_path, adult, batch_trials=3, n_startup_trials=2)
    for name in ("a", "b"):
        assert tune_cli(config, "--n-trials", "7", "--study-name", name) == 0
    assert tune_cli(config, "--n-trials", "7", "--study-name", "one", "--set", "tune.batch_trials=1") == 0
    trials = {n: journal_trials(study_dir(config, n) / "study.journal", n) for n in ("a", "b", "one")}
    batched = trials["a"]
    assert [t.number for t in batched] == list(range(7)) and all(t.state.is_finished() for t in batched)
    for first, last in ((0, 2), (3, 5)):  # batches 0-2, 3-5, then 6 alone: each asked before its first was told
        assert batched[last].datetime_start < batched[first].datetime_complete
    assert batched[6].datetime_start >= batched[5].datetime_complete
    assert trials["one"][1].datetime_start >= trials["one"][0].datetime_complete
    same = [(t.state, t.value, t.params) for t in batched]
    assert same == [(t.state, t.value, t.params) for t in trials["b"]]
    # After the random start-up trials TPE proposes from what it was told: a batch sees less of the history.
    assert [t.params for t in trials["one"]][:2] == [t.params for t in batched][:2]
    assert [t.params for t in trials["one"]][3:] != [t.params for t in batched][3:]


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path, adult):
    # bagging_fraction above 1 is refused by LightGBM: those trials fail, the others complete
    config = tune_config(tmp_path, adult, search_space={"bagging_fraction": {"high": 1.5}}, pruner="none")
    assert tune_cli(config, "--n-trials", "6") == 0
    trials = pd.read_parquet(study_dir(config) / "trials.parquet")
    failed = trials[trials["state"] == "FAIL"]
    assert len(trials) == 6 and 1 <= len(failed) < 6 and failed["counted"].all()
    assert failed["fail_reason"].str.contains("LightGBMError.*bagging_fraction").all()
    assert (trials.loc[trials["state"] == "COMPLETE", "param_bagging_fraction"] <= 1.0).all()


def test_every_trial_failing_is_an_error_naming_the_first_failure(tmp_path, adult, capsys):
    config = tune_config(tmp_path, adult, search_space={"bagging_fraction": {"low": 1.1, "high": 1.5}})
    assert tune_cli(config, "--n-trials", "3") == 2
    assert "no trial of study 'default' completed" in capsys.readouterr().err
    assert len(pd.read_parquet(study_dir(config) / "trials.parquet")) == 3


class InterruptedEvaluator:
    """Scores the first trial of a batch, then is interrupted (Ctrl-C) in the second."""

    def __init__(self):
        self.prefetched, self.cancelled, self.calls = [], 0, 0
        self.prep = SimpleNamespace(folds=SimpleNamespace(pairs=lambda: [(0, 0)]))

    def prefetch(self, trials):
        self.prefetched.append(len(trials))

    def cancel_prefetched(self):
        self.cancelled += 1

    def evaluate(self, params, report=None):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return Evaluation(0.7, (0.7,), (5,), 0.0)


def test_an_interrupted_batch_excludes_its_unfinished_trials_and_drops_their_folds():
    study = optuna.create_study(direction="maximize")
    evaluator = InterruptedEvaluator()
    space = SimpleNamespace(trial_params=dict, distributions={"x": optuna.distributions.FloatDistribution(0, 1)})
    with pytest.raises(KeyboardInterrupt):
        run_trials(TrialPlan(evaluator, space, 6, batch=3), study, this_worker())
    trials = study.get_trials()
    assert evaluator.prefetched == [3] and evaluator.cancelled == 1  # the batch's folds were asked for, then dropped
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs[EXCLUDED_ATTR] and "interrupted" in t.user_attrs[REASON_ATTR] for t in trials[1:])
    assert (budget_of(trials).finished, budget_of(trials).excluded) == (1, 2)  # only the scored trial counts
    assert [counts_toward_budget(t) for t in trials] == [True, False, False]


class NanEvaluator:
    """Stands in for the evaluator to make the objective return NaN, as a broken metric would."""

    def evaluate(self, params, report=None):
        return Evaluation(math.nan, (math.nan,), (1,), 0.0)


def test_a_nan_score_is_recorded_as_fail_with_its_reason():
    study = optuna.create_study(direction="maximize")
    space = type("Space", (), {"trial_params": staticmethod(dict)})()
    trial = study.ask({"num_leaves": optuna.distributions.IntDistribution(2, 8)})
    run_one(TrialPlan(NanEvaluator(), space, 1, None), study, trial, this_worker())
    (frozen,) = study.get_trials()
    assert frozen.state == TrialState.FAIL and "returned nan" in frozen.user_attrs[REASON_ATTR]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ["--set", "tune.search_space.num_leaves.high=64"],
            r"search_space changed: num_leaves: int 2..256 -> int 2..64",
        ),
        (["--set", "model.metric='logloss'"], r"metric changed: auc -> logloss"),
        (["--set", "cv.n_splits=4"], r"folds changed: .*n_splits: 3 -> 4"),
        (["--set", "data.test_size=0.1"], r"data changed: .*rows: 2000 -> 1800"),
        (["--set", "tune.learning_rate=0.05"], r"training changed: fixed: \{'learning_rate': 0.2\} -> "),
    ],
)
def test_resuming_a_changed_study_is_refused_saying_what_changed(tuned, capsys, change, message):
    journal = study_dir(tuned) / "study.journal"
    before = journal.read_bytes()
    assert tune_cli(tuned, "--resume", "--n-trials", "7", *change) == 2
    err = capsys.readouterr().err
    assert "was started with other settings" in err and "--new-study" in err
    assert re.search(message, err), err
    assert journal.read_bytes() == before  # the refused call wrote nothing to the study


def test_an_existing_study_needs_resume_or_new_study(tmp_path, adult, capsys):
    config = tune_config(tmp_path, adult)
    assert tune_cli(config, "--n-trials", "2") == 0
    assert tune_cli(config, "--n-trials", "3") == 2
    assert "already has 2 trials; continue it with --resume" in capsys.readouterr().err
    assert tune_cli(config, "--n-trials", "3", "--resume") == 0
    assert len(journal_trials(study_dir(config) / "study.journal")) == 3
    assert tune_cli(config, "--n-trials", "2", "--new-study", "--set", "tune.search_space.num_leaves.high=16") == 0
    trials = journal_trials(study_dir(config) / "study.journal")
    assert len(trials) == 2 and all(t.params["num_leaves"] <= 16 for t in trials)


def test_final_learning_rate_rescores_the_best_trial(tmp_path, adult):
    config = tune_config(tmp_path, adult, final_learning_rate=0.1)
    assert tune_cli(config, "--n-trials", "3") == 0
    best = json.loads((study_dir(config) / "best_params.json").read_text())
    final = best["final"]
    assert final["learning_rate"] == 0.1 and final["search_learning_rate"] == 0.2 and final["trial"] == best["trial"]
    assert final["used"] == (final["value"] >= best["value"])
    assert best["params"]["learning_rate"] == (0.1 if final["used"] else 0.2)


def test_train_takes_the_final_retrains_folds_and_writes_what_it_would_train(tmp_path, adult, capsys):
    """The final retrain is the model `train --params best_params.json` trains: train takes its folds from the study
    folder (checked by its manifest) and its run equals a run that trained them; a tampered fold is trained instead."""
    config = tune_config(tmp_path, adult, params={"learning_rate": 0.5}, final_learning_rate=0.1)
    assert tune_cli(config, "--n-trials", "2") == 0
    folder = study_dir(config)
    best = json.loads((folder / "best_params.json").read_text())
    assert best["final"]["used"]  # the lower rate wins here, so best_params.json asks for the retrained model
    assert sorted(p.name for p in (folder / "final" / "models").iterdir()) == ["fold_0.txt", "fold_1.txt", "fold_2.txt"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "best_params.json").write_text((folder / "best_params.json").read_text())
    runs = {}
    for name, params in (("taken", folder), ("trained", elsewhere)):
        assert (
            main(["train", "--config", str(config), "--run-id", name, "--params", str(params / "best_params.json")])
            == 0
        )
        runs[name] = config.parent / "runs" / config.stem / name
        err = capsys.readouterr().err
        assert ("its final retrain trained this model" in err) == (name == "taken") and "warning" not in err
    for name in ("oof.parquet", "test_pred.parquet", "models/fold_0.txt", "models/fold_2.txt"):
        if (runs["trained"] / name).exists():
            assert (runs["taken"] / name).read_bytes() == (runs["trained"] / name).read_bytes(), name
    scores = [json.loads((runs[n] / "scores.json").read_text()) for n in ("taken", "trained")]
    assert scores[0]["oof_score"] == scores[1]["oof_score"] == best["final"]["value"]
    assert scores[0]["best_iterations"] == scores[1]["best_iterations"] == best["final"]["best_iterations"]
    model = folder / "final" / "models" / "fold_1.txt"
    model.write_text(model.read_text().replace("Tree=0", "Tree=0 ", 1))  # no longer the file its manifest names
    assert (
        main(["train", "--config", str(config), "--run-id", "again", "--params", str(folder / "best_params.json")]) == 0
    )
    err = capsys.readouterr().err
    assert "its final retrain trained this model" not in err and "the folds it keeps are not taken" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "100000"], r"--workers 100000 is more than the \d+ cores available"),
        (["--n-trials", "0"], r"--n-trials and --workers must be at least 1"),
        (["--resume", "--new-study"], r"--resume and --new-study contradict each other"),
        (["--storage", "postgresql+psycopg2://nobody:secret@127.0.0.1:1/none"], r"cannot open the database"),
    ],
)
def test_bad_command_line_is_refused(tmp_path, adult, capsys, args, message):
    config = tune_config(tmp_path, adult)
    assert tune_cli(config, *args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "secret" not in err


class FailedByAnotherWorker:
    """Runs while another worker marks the trial FAIL (it saw no heartbeat): the late result is dropped."""

    def __init__(self, study):
        self.study = study

    def evaluate(self, params, report=None):
        running = self.study.get_trials(states=(TrialState.RUNNING,))[0]
        self.study._storage.set_trial_state_values(running._trial_id, TrialState.FAIL)
        return Evaluation(0.9, (0.9,), (10,), 0.0)


def test_a_result_arriving_after_another_worker_failed_the_trial_is_dropped(capsys):
    study = optuna.create_study(direction="maximize")
    space = type("Space", (), {"trial_params": staticmethod(dict)})()
    trial = study.ask({"num_leaves": optuna.distributions.IntDistribution(2, 8)})
    run_one(TrialPlan(FailedByAnotherWorker(study), space, 1, None), study, trial, this_worker())
    assert study.get_trials()[0].state == TrialState.FAIL
    assert "marked FAIL by another worker" in capsys.readouterr().err


def test_help_says_trial_budgets_are_reproducible_and_timeouts_are_not(capsys):
    assert main(["tune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "A trial-count budget is reproducible" in text and "Timeouts are NOT reproducible" in text
