"""Drift: the per-feature check `gbpipe predict` runs over its chunks, and adversarial validation.

Per feature: a run is trained (`gbpipe train`: 5 stratified folds, early stopping) on 50,000 rows of a generated
binary table of 100 features (make_classification; 90 numeric columns, 10 turned into categories of 20 levels).
1,000,000 further rows of the same generator, 5 columns shifted, go through `predict_file` twice per repeat,
interleaved: with the drift check (the run as `gbpipe train` writes it, drift_reference.json included) and
without it (the same run without that file, as runs made before drift); the two outputs must be identical.
Reported: the seconds spent inside the check (its calls timed within the predict that runs it) as a share of
predict without the check, and the side-by-side differences of wall and CPU time (all threads), which on a
shared machine also carry other processes' noise; the counter alone (BinCounter over the same chunks'
matrices) for reference. Adversarial validation: `adversarial_validation` on 100,000 rows against 100,000
rows with 3 shifted columns (200,000 x 50), every row used (drift.sample_rows = 100,000), 5 folds.
Both use 2 threads (LightGBM's predict and the folds' threads).

Run under `flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_drift.py`.
The last line is one JSON object: seconds (medians of --repeats), the per-feature check's share of predict
(target <= 0.10) and the adversarial AUC.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.datasets import make_classification

from pipeline.config import load_config
from pipeline.config.sections import DriftSection
from pipeline.core.run_folder import RunReader
from pipeline.data.feature_bins import REFERENCE_FILE, ReferenceBins
from pipeline.data.schema import ConversionReport, FeatureSchema, to_matrix
from pipeline.drift.adversarial import adversarial_validation
from pipeline.drift.measures import BinCounter
from pipeline.drift.monitor import DriftMonitor
from pipeline.predict import predict_file, read_chunks
from pipeline.train.run import train
from tests.helpers.runs import without_reference

THREADS = 2
TARGET = 0.10
CHUNK = 100_000


def generated(rows: int, cols: int, categorical: int, seed: int) -> pd.DataFrame:
    """make_classification's rows; the last `categorical` columns cut into 20 quantile levels named as text."""
    X, y = make_classification(
        n_samples=rows, n_features=cols, n_informative=10, n_redundant=10, flip_y=0.2, random_state=seed
    )
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(cols)])
    for j in range(cols - categorical, cols):
        levels = np.searchsorted(np.quantile(X[:, j], np.linspace(0, 1, 21)[1:-1]), X[:, j])
        frame[f"x{j}"] = np.array([f"level{k}" for k in range(20)], dtype=object)[levels]
    return frame.assign(y=y)


def trained_run(tmp: Path, train_rows: pd.DataFrame) -> Path:
    train_rows.to_parquet(tmp / "train.parquet")
    config = tmp / "bench.toml"
    config.write_text(
        f'[experiment]\nname = "drift_bench"\nruns_dir = "{tmp / "runs"}"\n\n'
        f'[data]\ntrain = "{tmp / "train.parquet"}"\ntarget = "y"\ntask = "binary"\n\n'
        '[cv]\nn_splits = 5\nseed = 42\n\n[model]\nmetric = "auc"\n'
        f"num_boost_round = 2000\nearly_stopping_rounds = 50\nnum_threads = {THREADS}\n"
        "params = { learning_rate = 0.1, num_leaves = 31 }\n"
    )
    return train(load_config(config), run_id="checked")


def counter_seconds(run: Path, input_path: Path) -> float:
    """BinCounter alone over the chunks predict reads (converted before the clock)."""
    reader = RunReader(run)
    schema = FeatureSchema.from_dict(reader.read_json("schema.json")["features"])
    counter = BinCounter(ReferenceBins.from_dict(reader.read_json(REFERENCE_FILE)))
    seconds = 0.0
    for chunk in read_chunks(input_path, CHUNK):
        report = ConversionReport()
        X = to_matrix(schema, chunk, str(input_path), report)
        start = time.perf_counter()
        counter.add(X, report.unseen_categories)
        seconds += time.perf_counter() - start
    return seconds


class CheckClock:
    """Seconds spent inside predict's drift check (counting each chunk, measuring at the end)."""

    def __init__(self):
        self.seconds = 0.0
        for name in ("observe", "check", "warning"):
            setattr(DriftMonitor, name, self._timed(getattr(DriftMonitor, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def cpu_seconds() -> float:
    """CPU time of this process, all its threads (less sensitive than wall time to other load on the machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_predict(folder: Path, input_path: Path, output: Path, clock: CheckClock) -> tuple[dict[str, float], int]:
    clock.seconds = 0.0
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = predict_file(folder, input_path, output, CHUNK)
    wall = time.perf_counter() - start
    return {"wall": wall, "cpu": cpu_seconds() - cpu, "check": clock.seconds}, summary.rows


def per_feature(tmp: Path, repeats: int) -> dict:
    frame = generated(1_050_000, 100, 10, seed=0)
    run = trained_run(tmp, frame.iloc[:50_000])
    new = frame.iloc[50_000:].drop(columns="y").reset_index(drop=True)
    new[[f"x{j}" for j in range(5)]] += 0.5  # drifted columns: the check warns, as it would in use
    new.to_parquet(tmp / "new.parquet")
    del frame, new
    unchecked, clock = without_reference(run, tmp / "unchecked"), CheckClock()
    times: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    counter: list[float] = []
    for r in range(repeats):
        order = [("with", run), ("without", unchecked)]
        for name, folder in order if r % 2 == 0 else order[::-1]:
            found, rows = time_predict(folder, tmp / "new.parquet", tmp / f"{name}.parquet", clock)
            times[name].append(found)
        counter.append(counter_seconds(run, tmp / "new.parquet"))
        w, wo = times["with"][-1], times["without"][-1]
        print(
            f"repeat {r + 1}/{repeats}: predict {wo['wall']:.2f}s (cpu {wo['cpu']:.2f}s), with the check "
            f"{w['wall']:.2f}s (cpu {w['cpu']:.2f}s, {w['check']:.2f}s in the check), counter alone {counter[-1]:.2f}s",
            flush=True,
        )
    assert (tmp / "with.parquet").read_bytes() == (tmp / "without.parquet").read_bytes()

    def median(name: str, key: str) -> float:
        return statistics.median(t[key] for t in times[name])

    without_s, check_s = median("without", "wall"), median("with", "check")
    return {
        "per_feature_rows": rows,
        "per_feature_features": 100,
        "predict_seconds_without_check": round(without_s, 3),
        "predict_seconds_with_check": round(median("with", "wall"), 3),
        "check_seconds_inside_predict": round(check_s, 3),
        "per_feature_share_of_predict": round(check_s / without_s, 4),
        "wall_difference_share": round(median("with", "wall") / without_s - 1, 4),
        "cpu_difference_share": round(median("with", "cpu") / median("without", "cpu") - 1, 4),
        "counter_seconds": round(statistics.median(counter), 3),
        "predict_trees": sum(b.num_trees() for b in load_boosters(run)),
        "predict_times": {k: [{x: round(y, 3) for x, y in t.items()} for t in v] for k, v in times.items()},
    }


def load_boosters(run: Path):
    from pipeline.engine.fitted import load_fold_models

    return load_fold_models(RunReader(run)).boosters


def adversarial(repeats: int) -> dict:
    X, _ = make_classification(n_samples=200_000, n_features=50, n_informative=10, random_state=1)
    X_train, X_new = X[:100_000], X[100_000:].copy()
    X_new[:, :3] += 0.2
    schema = FeatureSchema(tuple(f"x{j}" for j in range(50)), {f"x{j}": "numeric" for j in range(50)})
    settings = DriftSection(sample_rows=100_000)
    seconds, result = [], None
    for r in range(repeats):
        start = time.perf_counter()
        result = adversarial_validation(X_train, X_new, schema, settings, THREADS)
        seconds.append(time.perf_counter() - start)
        print(f"adversarial {r + 1}/{repeats}: {seconds[-1]:.2f}s, OOF AUC {result.auc:.4f}", flush=True)
    return {
        "adversarial_rows": result.n_train + result.n_new,
        "adversarial_features": 50,
        "adversarial_seconds": round(statistics.median(seconds), 3),
        "adversarial_times": [round(s, 3) for s in seconds],
        "adversarial_auc": round(result.auc, 4),
        "adversarial_n_splits": result.n_splits,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="median of this many timings of each part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        found = per_feature(Path(folder), args.repeats)
    found.update(adversarial(args.repeats))
    share = found["per_feature_share_of_predict"]
    print(f"per-feature check: {share:.1%} of predict; adversarial validation {found['adversarial_seconds']:.1f}s")
    print(json.dumps({**found, "target_share": TARGET, "meets_target": share <= TARGET, "threads": THREADS}))


if __name__ == "__main__":
    main()
