"""`gbpipe report --compare` and `gbpipe runs` on two real adult runs (num_leaves 31 vs 7)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.core.bootstrap import paired_bootstrap
from pipeline.core.errors import ArtifactError
from pipeline.core.metrics import score
from pipeline.report.compare import compare_runs
from tests.helpers.report_runs import adult_runs, copy_run, wine_run


def scores_of(run):
    return json.loads((run / "scores.json").read_text())


def test_compare_two_real_runs(tmp_path, tmp_path_factory, capsys):
    runs = adult_runs(tmp_path_factory)
    assert main(["report", "--compare", *map(str, runs), "--output", str(tmp_path / "cmp"), "-q"]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    entries = doc["sections"]["leaderboard"]["data"]["entries"]
    oof = [scores_of(r)["oof_score"] for r in runs]
    best, other = (0, 1) if oof[0] >= oof[1] else (1, 0)
    assert [e["run"] for e in entries] == [runs[best].name, runs[other].name]
    # every row is shared (same experiment), so the shared-rows score is the run's own OOF score
    assert [e["score"] for e in entries] == [oof[best], oof[other]]
    assert entries[0]["difference"] is None and entries[1]["difference"] == pytest.approx(oof[other] - oof[best])
    assert entries[1]["difference_ci_low"] <= entries[1]["difference"] <= entries[1]["difference_ci_high"]
    assert 0.0 <= entries[1]["p_not_better"] <= 1.0
    # the same paired bootstrap as pipeline.bootstrap's, on the runs' own OOF files
    frames = [pd.read_parquet(r / "oof.parquet") for r in (runs[other], runs[best])]
    y = (frames[0]["target"] == ">50K").to_numpy().astype(int)
    diff, low, high = paired_bootstrap("auc", y, frames[0]["pred"].to_numpy(), frames[1]["pred"].to_numpy())
    assert (entries[1]["difference_ci_low"], entries[1]["difference_ci_high"]) == pytest.approx((low, high))
    assert diff == pytest.approx(score("auc", y, frames[0]["pred"].to_numpy()) - oof[best])
    differences = {r[0]: r[1:] for r in doc["sections"]["config"]["tables"]["config_differences"]["rows"]}
    leaves = [7, 31] if runs[best].name == runs[1].name else [31, 7]
    assert differences == {"lightgbm.num_leaves": leaves}
    assert runs[best].name in out and "lightgbm.num_leaves" in out and "compare report:" in out
    assert (tmp_path / "cmp" / "compare.html").is_file() and (tmp_path / "cmp" / "compare.md").is_file()


def test_compare_scores_only_the_shared_rows(tmp_path, tmp_path_factory):
    """Runs are compared on the OOF rows all of them validated, and refused when their targets differ."""
    runs = [copy_run(r, tmp_path / str(i)) for i, r in enumerate(adult_runs(tmp_path_factory))]
    frame = pd.read_parquet(runs[1] / "oof.parquet")
    _rewrite(runs[1], "oof.parquet", frame.iloc[500:])
    comparison = compare_runs(runs, n_boot=200)
    assert comparison.n_shared == 2500
    kept = pd.read_parquet(runs[0] / "oof.parquet").iloc[500:]
    y = (kept["target"] == ">50K").to_numpy().astype(int)
    entry = next(e for e in comparison.entries if e.run_id == runs[0].name)
    assert entry.shared.score == pytest.approx(score("auc", y, kept["pred"].to_numpy()), abs=1e-12)
    assert entry.oof_score == scores_of(runs[0])["oof_score"] != entry.shared.score
    flipped = frame.copy()
    flipped.loc[:10, "target"] = np.where(flipped.loc[:10, "target"] == ">50K", "<=50K", ">50K")
    _rewrite(runs[1], "oof.parquet", flipped)
    with pytest.raises(ArtifactError, match="disagree on the target of 11 of 3000 shared rows"):
        compare_runs(runs, n_boot=200)


def _rewrite(run, name, frame):
    """Replace a training file and its manifest hash (simulates a run of other data)."""
    import hashlib

    from pipeline.core.artifacts import parquet_bytes

    data = parquet_bytes(frame)
    (run / name).write_bytes(data)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.pop("manifest_sha256", None)
    manifest["files"][name].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    (run / "manifest.json").write_text(json.dumps(manifest))


def test_runs_lists_headline_numbers(tmp_path_factory, capsys):
    runs = adult_runs(tmp_path_factory)
    exp_dir = runs[0].parent
    assert main(["runs", "--experiment-dir", str(exp_dir)]) == 0
    out = capsys.readouterr().out
    for run in runs:
        row = next(line for line in out.splitlines() if run.name in line)
        assert f"{scores_of(run)['oof_score']:.5g}" in row and f"{scores_of(run)['holdout_score']:.5g}" in row
    latest = (exp_dir / "LATEST").read_text().strip()
    assert next(line for line in out.splitlines() if latest in line).startswith("* ")
    config = next(exp_dir.parent.parent.glob("*.toml"))
    assert main(["runs", "--config", str(config)]) == 0
    assert capsys.readouterr().out == out


@pytest.mark.parametrize(
    "make_args, code, message",
    [
        (lambda a, w, t: ["report", "--compare", str(a)], 2, "at least two runs"),
        (lambda a, w, t: ["report", "--compare", str(a), str(a)], 2, "the same run twice"),
        (lambda a, w, t: ["report", "--compare", str(a), str(w)], 2, "same task and metric"),
        (lambda a, w, t: ["runs", "--experiment-dir", str(t / "nope")], 2, "not found"),
    ],
)
def test_compare_and_runs_errors(make_args, code, message, tmp_path, tmp_path_factory, capsys):
    args = make_args(adult_runs(tmp_path_factory)[0], wine_run(tmp_path_factory), tmp_path)
    assert main(args) == code
    assert message in capsys.readouterr().err
