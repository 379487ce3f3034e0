"""Dask: features and data-parallel training on a LocalCluster of 2 single-threaded workers, against in-process.

- features: `gbpipe features` on 10M generated events of 100k entities (bench_features.py's generator, 12 monthly
  cutoffs) written as 8 parquet parts in time order; on the cluster Dask shuffles them by entity and each partition
  is built by the Polars builder.
- train: `gbpipe train` on 2M rows x 50 (bench_scale.py's generator) as 8 parquet parts, 3 folds; in-process the
  table is read whole (data.batch_rows "auto" at this size), on the cluster it is read in batches and each fold
  trains across the workers with lightgbm.dask.

Each gbpipe command runs in its own child process: its wall time and peak RSS (/usr/bin/time) are the client's.
The workers are restarted before each cluster step and their peak RSS (VmHWM) read after it, so a step's
per-worker peak is its own. Two cores: no speed-up is expected from 2 workers; the claim checked is that the table
is split across the workers, not copied to each (per-worker peak at most 0.6x the in-process peak).

Run (about 10 minutes; figures in bench/README.md, "Dask"):
    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_dask.py [--events 10000000] [--rows 2000000]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "out" / "dask"
GBPIPE = str(ROOT / ".venv" / "bin" / "gbpipe")
N_PARTS = 8


def run(args: list[str]) -> tuple[float, float]:
    """A gbpipe command in a child process: its wall seconds and peak RSS in MiB. Measured by /usr/bin/time, whose
    own child starts small: a child forked from this process would inherit its high-water mark across exec."""
    report = OUT / "time.txt"
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(report), GBPIPE, *args, "-q"], stdout=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise SystemExit(f"gbpipe {' '.join(args)} failed")
    return time.perf_counter() - started, int(report.read_text().split()[-1]) / 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


def on_cluster(client, args: list[str]) -> tuple[float, float, float]:
    """A gbpipe command on the cluster: wall seconds, the client's peak RSS and the largest worker peak (MiB)."""
    client.restart()
    client.run(_reset_peak)
    seconds, client_peak = run(args)
    return seconds, client_peak, max(client.run(_peak_mb).values())


def write_parts(frame: pd.DataFrame, folder: Path) -> None:
    if folder.is_dir() and len(list(folder.glob("*.parquet"))) == N_PARTS:
        return
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, len(frame), N_PARTS + 1).astype(int)
    for k in range(N_PARTS):
        frame.iloc[bounds[k] : bounds[k + 1]].to_parquet(folder / f"part_{k}.parquet", index=False)


def features_config(events: Path, runs: Path) -> Path:
    from bench_features import SCENARIOS

    scenario = SCENARIOS["generated"]
    config = {
        "experiment": {"name": "bench_dask_features", "runs_dir": str(runs)},
        "data": {"target": "label", "task": "binary", "id": "row_key", "keep": ["entity", "cutoff"]},
        "features": {
            "events": str(events),
            "entity": scenario["entity"],
            "time": scenario["time"],
            "windows": list(scenario["windows"]),
            "aggregations": {c: list(f) for c, f in scenario["aggregations"].items()},
            "cutoffs": {"first": "2023-01-01", "test": "2023-12-01"},
            "label": {"column": scenario["label"], "aggregate": "sum", "above": scenario["above"]},
        },
    }
    path = OUT / "features.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def train_config(parts: Path, runs: Path, batch_rows: int | str) -> Path:
    config = {
        "experiment": {"name": f"bench_dask_train_{batch_rows}", "runs_dir": str(runs)},
        "data": {"train": str(parts), "target": "y", "task": "binary", "id": "row", "batch_rows": batch_rows},
        "cv": {"n_splits": 3},
        "model": {
            "num_boost_round": 30,
            "early_stopping_rounds": 10,
            "num_threads": 2,
            "params": {"learning_rate": 0.2, "num_leaves": 31},
        },
    }
    path = OUT / f"train_{batch_rows}.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def features_step(client, address: str, n_events: int) -> dict:
    from bench_features import generate_events

    parts = OUT / f"events_{n_events}"
    if not parts.is_dir():
        write_parts(generate_events(n_events, 100_000), parts)
    here, here_peak = run(["features", "--config", str(features_config(parts, OUT / "runs_here"))])
    there, client_peak, worker_peak = on_cluster(
        client, ["features", "--config", str(features_config(parts, OUT / "runs_there")), "--cluster", address]
    )
    same = _same_features(OUT / "runs_here", OUT / "runs_there")
    return {"in_process_s": here, "in_process_peak_mb": here_peak, "cluster_s": there,
            "client_peak_mb": client_peak, "per_worker_peak_mb": worker_peak, "identical": same}  # fmt: skip


def _same_features(here: Path, there: Path) -> bool:
    tables = [pd.read_parquet(next((root / "bench_dask_features" / "features").iterdir()) / "features.parquet")
              for root in (here, there)]  # fmt: skip
    return tables[0].equals(tables[1])


def train_step(client, address: str, n_rows: int) -> dict:
    from bench_scale import generate

    whole = OUT / f"train_{n_rows}.parquet"
    generate(whole, n_rows)
    parts = OUT / f"train_{n_rows}_parts"
    if not parts.is_dir():
        write_parts(pq.read_table(whole).to_pandas(), parts)
    runs = OUT / "runs_train"
    here, here_peak = run(
        ["train", "--config", str(train_config(parts, runs, "auto")), "--run-id", f"here{time.time_ns()}"]
    )
    there, client_peak, worker_peak = on_cluster(
        client,
        ["train", "--config", str(train_config(parts, runs, 100_000)), "--run-id", f"there{time.time_ns()}",
         "--cluster", address],
    )  # fmt: skip
    scores = {}
    for name in ("auto", "100000"):
        latest = runs / f"bench_dask_train_{name}"
        newest = max((p for p in latest.iterdir() if (p / "scores.json").is_file()), key=lambda p: p.stat().st_mtime)
        scores[name] = json.loads((newest / "scores.json").read_text())["oof_score"]
    return {"in_process_s": here, "in_process_peak_mb": here_peak, "cluster_s": there,
            "client_peak_mb": client_peak, "per_worker_peak_mb": worker_peak,
            "oof_in_process": scores["auto"], "oof_cluster": scores["100000"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    OUT.mkdir(parents=True, exist_ok=True)
    for runs in ("runs_here", "runs_there", "runs_train"):  # a cached feature table would be reused, not built
        shutil.rmtree(OUT / runs, ignore_errors=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            address = cluster.scheduler_address
            features = features_step(client, address, args.events)
            print("features", json.dumps(features), flush=True)
            train = train_step(client, address, args.rows)
            print("train", json.dumps(train), flush=True)
    print(
        json.dumps(
            {
                "events": args.events,
                "rows": args.rows,
                "features_ratio": features["cluster_s"] / features["in_process_s"],
                "train_ratio": train["cluster_s"] / train["in_process_s"],
                "per_worker_peak_mb": {
                    "features": features["per_worker_peak_mb"],
                    "train": train["per_worker_peak_mb"],
                },
                "in_process_peak_mb": {
                    "features": features["in_process_peak_mb"],
                    "train": train["in_process_peak_mb"],
                },
                "client_peak_mb": {"features": features["client_peak_mb"], "train": train["client_peak_mb"]},
                "features_identical": features["identical"],
                "oof": {"in_process": train["oof_in_process"], "cluster": train["oof_cluster"]},
            }
        )
    )


if __name__ == "__main__":
    main()
