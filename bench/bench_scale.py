"""Scale: gbpipe train and predict on generated tables of 1M, 10M and 30M rows x 50 columns.

Every step runs in its own child process, which reports its wall time and its own peak resident
memory (getrusage ru_maxrss), so one step's memory never hides another's:

- probe: `prepare`, then bin the training matrix once into a LightGBM Dataset; its size is that of its binary
  file (`binned_mb`: bins, labels, bin mappers), beside the RSS growth of that step (`binned_rss_mb`, which
  earlier runs reported as `binned_mb`: it also counts what the allocators keep or take back).
- train: `gbpipe train` end to end (K folds, few rounds, 2 threads).
- predict: `gbpipe predict` at two chunk sizes; the peak should follow the chunk size, not the file.

`--read batches` (the default) trains as data.batch_rows reads a large table: Arrow batches binned by
LightGBM as they come (pipeline/data/stream.py); `--read whole` measures the whole-table path (a pandas table
and its float64 matrix) the same way. Claims checked: what training holds beyond the prepared state (the peak
of the training phase, measured with the kernel's VmHWM reset after `prepare`) is at most 2x the binned
Dataset plus one batch; predict memory stays bounded by the chunk size.
The tables are synthetic on purpose: the point is the row count, which no real dataset here has.

Run (about an hour at 1, 10 and 30M rows; ~6 GB of memory reading in batches, ~25 GB would be needed whole):
    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_scale.py [--sizes 1,10,30] [--read batches]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "scale"
N_FEATURES = 50
ROW_GROUP = 500_000
BATCH_ROWS = 100_000  # data.batch_rows of the batches read


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since start or since the last reset) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> None:
    """Start VmHWM afresh from the current RSS (Linux >= 4.0), to measure one phase's own peak."""
    Path("/proc/self/clear_refs").write_text("5")


def generate(path: Path, n_rows: int, seed: int = 0) -> None:
    """n_rows x 50 float32 features (40 continuous, 10 small integers) and a binary target, written
    row group by row group so the generator itself stays small."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == n_rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer = None
    weights = np.random.default_rng(seed).normal(size=N_FEATURES).astype("float32")
    for start in range(0, n_rows, ROW_GROUP):
        rng = np.random.default_rng([seed, start])
        n = min(ROW_GROUP, n_rows - start)
        X = rng.normal(size=(n, N_FEATURES)).astype("float32")
        X[:, 40:] = np.floor(np.abs(X[:, 40:]) * 4)
        X[rng.random((n, N_FEATURES)) < 0.02] = np.nan
        signal = np.nan_to_num(X) @ weights + 0.8 * np.nan_to_num(X[:, 0] * X[:, 1])
        y = (signal + rng.normal(scale=2.0, size=n) > 0).astype("int8")
        columns = {f"f{j}": X[:, j] for j in range(N_FEATURES)}
        table = pa.table({"row": np.arange(start, start + n, dtype="int64"), **columns, "y": y})
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()
    os.replace(tmp, path)


def write_config(folder: Path, data: Path, rounds: int, threads: int, n_splits: int, batch_rows: str) -> Path:
    text = f"""[experiment]
name = "scale_{data.stem}"
runs_dir = "{OUT / "runs"}"
[data]
train = "{data}"
target = "y"
task = "binary"
id = "row"
batch_rows = {batch_rows}
[cv]
n_splits = {n_splits}
seed = 1
[model]
num_boost_round = {rounds}
early_stopping_rounds = {rounds}
num_threads = {threads}
params = {{ learning_rate = 0.1, num_leaves = 63 }}
"""
    read = "whole" if "whole" in batch_rows else "batches"
    path = folder / f"{data.stem}_{read}.toml"
    path.write_text(text)
    return path


# ---- child processes: each measures itself ----
def child_cli(argv: list[str]) -> dict:
    """`gbpipe argv`; for train, the peak of the training phase (after `prepare`) is measured apart."""
    import pipeline.train.run as train_module
    from pipeline.cli import main

    marks: dict[str, float] = {}
    real_prepare = train_module.prepare

    def prepare_then_mark(*args, **kwargs):
        prep = real_prepare(*args, **kwargs)
        marks.update(
            prepared_mb=status_mb("VmRSS"),
            prepare_peak_mb=status_mb("VmHWM"),
            prepare_seconds=time.perf_counter() - start,
        )
        reset_peak()
        return prep

    train_module.prepare = prepare_then_mark
    start = time.perf_counter()
    code = main(argv)
    result = {"exit": code, "seconds": time.perf_counter() - start, "peak_mb": peak_mb()}
    if marks:
        result.update(marks, training_peak_mb=status_mb("VmHWM"))
    return result


def child_probe(config: str) -> dict:
    import psutil

    from pipeline.config import load_config
    from pipeline.data.prepare import prepare
    from pipeline.data.stream import StreamedMatrix
    from pipeline.engine.fold import build_dataset
    from pipeline.engine.spec import train_spec
    from pipeline.engine.streamed import bin_whole

    cfg = load_config(config)
    process = psutil.Process()
    start = time.perf_counter()
    prep = prepare(cfg, stream=True)
    prepared_mb = process.memory_info().rss / 2**20
    prepare_seconds = time.perf_counter() - start
    start = time.perf_counter()
    bin_data = bin_whole if isinstance(prep.X, StreamedMatrix) else build_dataset  # the whole Dataset, either way
    dataset = bin_data(prep.X, prep.y, train_spec(cfg, prep))
    binned_rss_mb = process.memory_info().rss / 2**20 - prepared_mb
    bin_seconds = time.perf_counter() - start
    # The Dataset's own size, as its binary file holds it (bins, labels, bin mappers): the RSS growth also counts
    # whatever the allocators kept or took back around the binning, so it moves when code before it frees more.
    saved = OUT / "binned.bin"
    dataset.save_binary(str(saved))
    binned_mb = saved.stat().st_size / 2**20
    saved.unlink()
    return {
        "prepared_mb": prepared_mb,
        "binned_mb": binned_mb,
        "binned_rss_mb": binned_rss_mb,
        "matrix_mb": prep.X.shape[0] * prep.X.shape[1] * 8 / 2**20,  # float64, held whole or not
        "prepare_seconds": prepare_seconds,
        "bin_seconds": bin_seconds,
        "num_data": dataset.num_data(),
        "peak_mb": peak_mb(),
    }


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(
    n_millions: float, rounds: int, threads: int, n_splits: int, chunks: tuple[int, ...], batch_rows: str
) -> dict:
    n_rows = int(round(n_millions * 1_000_000))
    data = OUT / "data" / f"rows{n_millions:g}m.parquet"
    t0 = time.perf_counter()
    generate(data, n_rows)
    print(
        f"{n_millions}M: table ready ({time.perf_counter() - t0:.0f}s, {data.stat().st_size / 2**20:.0f} MB)",
        file=sys.stderr,
        flush=True,
    )
    config = write_config(OUT, data, rounds, threads, n_splits, batch_rows)
    probe = run_child("probe", str(config))
    print(f"{n_millions}M: probe {probe}", file=sys.stderr, flush=True)
    run_id = f"r{int(time.time())}"
    train = run_child("cli", "train", "--config", str(config), "-q", "--run-id", run_id)
    assert train["exit"] == 0, train
    print(f"{n_millions}M: train {train}", file=sys.stderr, flush=True)
    run_dir = OUT / "runs" / f"scale_{data.stem}" / run_id
    predicts = {}
    for chunk in chunks:
        out = OUT / f"pred_{n_millions:g}m_{chunk}.parquet"
        result = run_child(
            "cli",
            "predict",
            "--run",
            str(run_dir),
            "--input",
            str(data),
            "--output",
            str(out),
            "--chunk-size",
            str(chunk),
            "-q",
        )
        assert result["exit"] == 0, result
        predicts[chunk] = result
        out.unlink()
        print(f"{n_millions}M: predict chunk {chunk}: {result}", file=sys.stderr, flush=True)
    scores = json.loads((run_dir / "scores.json").read_text())
    overhead = train["training_peak_mb"] - train["prepared_mb"]  # what training adds to the prepared data
    batch_mb = (BATCH_ROWS if batch_rows != '"whole"' else 0) * N_FEATURES * 8 / 2**20
    group_mb = ROW_GROUP * (N_FEATURES + 2) * 4 / 2**20  # one decoded row group (float32 columns)
    return {
        "batch_mb": batch_mb + (group_mb if batch_rows != '"whole"' else 0),
        "rows": n_rows,
        "train_seconds": train["seconds"],
        "train_peak_mb": train["peak_mb"],
        "prepare_seconds": train["prepare_seconds"],
        "prepare_peak_mb": train["prepare_peak_mb"],
        "prepared_mb": train["prepared_mb"],
        "training_peak_mb": train["training_peak_mb"],
        "matrix_mb": probe["matrix_mb"],
        "binned_mb": probe["binned_mb"],
        "binned_rss_mb": probe["binned_rss_mb"],
        "train_overhead_mb": overhead,
        "train_overhead_over_binned": overhead / probe["binned_mb"],
        "oof_auc": scores["oof_score"],
        "predict": {str(c): {"seconds": p["seconds"], "peak_mb": p["peak_mb"]} for c, p in predicts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,30", help="millions of rows, comma separated")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-splits", type=int, default=3)
    parser.add_argument("--chunks", default="100000,1000000", help="predict chunk sizes")
    parser.add_argument("--read", choices=["batches", "whole"], default="batches", help="data.batch_rows")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        print(json.dumps(child_probe(rest[0]) if kind == "probe" else child_cli(rest)))
        return
    chunks = tuple(int(c) for c in args.chunks.split(","))
    batch_rows = str(BATCH_ROWS) if args.read == "batches" else '"whole"'
    results = [
        measure(float(s), args.rounds, args.threads, args.n_splits, chunks, batch_rows) for s in args.sizes.split(",")
    ]
    small = results[0]
    ten = next((r for r in results if r["rows"] == 10_000_000), results[-1])
    per_row = [(r["train_seconds"] / r["rows"]) / (small["train_seconds"] / small["rows"]) for r in results]
    over = [r["training_peak_mb"] / r["binned_mb"] for r in results]  # the measure: 13x read whole at 10M
    adds = [r["train_overhead_mb"] / r["binned_mb"] for r in results]
    summary = {
        "bench": "scale",
        "read": args.read,
        "batch_rows": BATCH_ROWS if args.read == "batches" else None,
        "features": N_FEATURES,
        "rounds": args.rounds,
        "threads": args.threads,
        "n_splits": args.n_splits,
        "repeats": 1,
        "sizes_rows": [r["rows"] for r in results],
        "largest_rows_trained": max(r["rows"] for r in results),
        "train_seconds": [round(r["train_seconds"], 1) for r in results],
        "prepare_seconds": [round(r["prepare_seconds"], 1) for r in results],
        "train_seconds_per_million_ratio": [round(x, 3) for x in per_row],
        "train_peak_mb": [round(r["train_peak_mb"]) for r in results],
        "prepared_mb": [round(r["prepared_mb"]) for r in results],
        "training_peak_mb": [round(r["training_peak_mb"]) for r in results],
        "train_overhead_mb": [round(r["train_overhead_mb"]) for r in results],
        "binned_mb": [round(r["binned_mb"]) for r in results],
        "binned_rss_mb": [round(r["binned_rss_mb"]) for r in results],
        "matrix_mb": [round(r["matrix_mb"]) for r in results],
        "batch_mb": [round(r["batch_mb"]) for r in results],
        "train_peak_over_binned": [round(x, 2) for x in over],
        "train_overhead_over_binned": [round(x, 2) for x in adds],
        "target_10m_within_2x_binned_plus_batch": ten["training_peak_mb"] <= 2 * ten["binned_mb"] + ten["batch_mb"],
        # the same bound on what training adds to the prepared state (the process, its libraries, labels, ids
        # and fold ids stay whatever training does)
        "target_10m_adds_within_2x_binned_plus_batch": ten["train_overhead_mb"]
        <= 2 * ten["binned_mb"] + ten["batch_mb"],
        "predict_peak_mb": {c: [round(r["predict"][str(c)]["peak_mb"]) for r in results] for c in chunks},
        "predict_seconds": {c: [round(r["predict"][str(c)]["seconds"], 1) for r in results] for c in chunks},
        "oof_auc": [round(r["oof_auc"], 4) for r in results],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
