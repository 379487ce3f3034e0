"""Benchmark: gbpipe's point-in-time feature builder against hand-written DuckDB and Polars.

All three build the same table: for every monthly cutoff and every window (months before the cutoff,
and all history), the seeds' aggregations per entity over events strictly before the cutoff, the
label (sum over the month from the cutoff) and zero-filling of sums/counts; one row per entity
with an event before the cutoff. The faster of DuckDB and Polars is the reference.

Data: the real Online Retail table (541,909 lines; 12 monthly cutoffs, windows 1/3/6/12 months and
all history) and a generated table of 10M events of 100k entities in time order (--shuffled: random
order) with 5 numeric columns, each given all 8 seeds' functions (2 monthly cutoffs, windows 1/3/12
months and all history). Every contender runs in a fresh process per round (rounds interleaved,
median time reported; a reference over twice as slow as the other in round 1 is not rerun). Peak
memory is the process's peak resident size during the build, the event table already loaded
(read from /proc after a reset); `peak_vs_events` is that peak less what the interpreter and
libraries held before the table was read, over the table's size. The outputs are compared cell
by cell, so the ratio compares equal work.

    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_features.py          # ~5-10 min on 2 cores
    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/bench_features.py --events 2000000 --rounds 1

The last line is one JSON object: vs_reference_ratio, peak_rss_mb, events_mb (10M-event table), and more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
THREADS = 2
FUNCTIONS = ("mean", "max", "min", "sum", "count", "std", "skew", "nunique")
ZERO_FILLED = ("sum", "count", "nunique")
RETAIL = ROOT / "data" / "raw" / "online_retail" / "online_retail.parquet"
SCENARIOS = {
    # entity, time, derived total?, {column: functions}, windows, first and test cutoff, label column and threshold
    "retail": dict(
        entity="CustomerID",
        time="InvoiceDate",
        derive=True,
        windows=(1, 3, 6, 12, "all"),
        aggregations={
            "total": FUNCTIONS[:7],
            "Quantity": FUNCTIONS[:7],
            "UnitPrice": FUNCTIONS[:7],
            "InvoiceNo": ("nunique",),
            "StockCode": ("nunique",),
        },
        first="2011-01-01",
        test="2011-12-01",
        label="total",
        above=300.0,
    ),
    "generated": dict(
        entity="entity",
        time="time",
        derive=False,
        windows=(1, 3, 12, "all"),
        aggregations={c: FUNCTIONS for c in ("amount", "quantity", "price", "invoice", "product")},
        first="2023-11-01",
        test="2023-12-01",
        label="amount",
        above=100.0,
    ),
}


# ---------------------------------------------------------------- data
def generate_events(n_events: int, n_entities: int, shuffled: bool = False, seed: int = 0) -> pd.DataFrame:
    """Events over 2022-2023: skewed activity per entity, invoices of ~5 lines, ~20k products; in time
    order like an event log (the retail file is too), or shuffled."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, n_entities) + 0.05
    entity = rng.choice(n_entities, size=n_events, p=weights / weights.sum()).astype("int64")
    start = np.datetime64("2022-01-01T00:00:00", "s").astype("int64")
    span = 2 * 365 * 86_400
    seconds = start + rng.integers(0, span, n_events)
    if not shuffled:
        seconds.sort()
    quantity = rng.geometric(0.2, n_events).astype("int64") * np.where(rng.random(n_events) < 0.02, -1, 1)
    price = np.round(rng.lognormal(1.0, 0.8, n_events), 2)
    return pd.DataFrame(
        {
            "entity": entity,
            "time": pd.to_datetime(seconds, unit="s").as_unit("ns"),
            "amount": quantity * price,
            "quantity": quantity,
            "price": price,
            "invoice": entity * 1000 + rng.integers(0, 200, n_events),
            "product": rng.zipf(1.3, n_events) % 20_000,
        }
    )


def events_file(n_events: int, n_entities: int, shuffled: bool = False) -> Path:
    folder = Path(tempfile.gettempdir()) / "gbpipe-bench"
    path = folder / f"events_{n_events}_{n_entities}{'_shuffled' if shuffled else ''}.parquet"
    if not path.is_file():
        folder.mkdir(exist_ok=True)
        tmp = path.with_suffix(".tmp")
        generate_events(n_events, n_entities, shuffled).to_parquet(tmp, index=False)
        os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- contenders
def spec_of(scenario: dict):
    from features.spec import FeaturesSection

    return FeaturesSection.model_validate(
        {
            "events": "-",
            "entity": scenario["entity"],
            "time": scenario["time"],
            "windows": list(scenario["windows"]),
            "derive": {"total": "Quantity * UnitPrice"} if scenario["derive"] else {},
            "aggregations": {c: list(f) for c, f in scenario["aggregations"].items()},
            "recency": False,
            "active_months": False,
            "cutoffs": {"first": scenario["first"], "test": scenario["test"]},
            "label": {"column": scenario["label"], "aggregate": "sum", "above": scenario["above"]},
        }
    )


def cutoffs_of(scenario: dict) -> list[pd.Timestamp]:
    first, test = pd.Timestamp(scenario["first"]), pd.Timestamp(scenario["test"])
    return list(pd.date_range(first, test, freq="MS"))


def run_ours(events: pd.DataFrame, scenario: dict):
    """gbpipe's build as the pipeline runs it: its output is the training and the test table (a FeatureTable)."""
    from features.build import build_features

    return build_features(events, spec_of(scenario), "label")


def one_frame(result) -> pd.DataFrame:
    """A contender's output as one frame for the cell-by-cell comparison. gbpipe's two tables are stacked
    here, after its time and peak were read: stacking copies the whole table, work the pipeline never does."""
    if isinstance(result, pd.DataFrame):
        return result
    return pd.concat([result.train, result.test], ignore_index=True).drop(columns=["row_key"])


def _name(column: str, function: str, window) -> str:
    return f"{column}_{function}_{'all' if window == 'all' else f'{window}m'}"


def run_polars(events, scenario: dict) -> pd.DataFrame:
    """Hand-written Polars: per cutoff, a filter and a group-by per window, joined on the entity."""
    import polars as pl

    ent, t = scenario["entity"], scenario["time"]
    ev = events.lazy().filter(pl.col(ent).is_not_null())
    if scenario["derive"]:
        ev = ev.with_columns(total=pl.col("Quantity") * pl.col("UnitPrice"))
    frames = []
    for c in cutoffs_of(scenario):
        past = ev.filter(pl.col(t) < c)
        rows = past.group_by(ent).agg(pl.len().alias("__n"))
        for w in scenario["windows"]:
            sub = past if w == "all" else past.filter(pl.col(t) >= c - pd.DateOffset(months=w))
            aggs = [
                _polars_agg(pl, col, fn).alias(_name(col, fn, w))
                for col, fns in scenario["aggregations"].items()
                for fn in fns
            ]
            rows = rows.join(sub.group_by(ent).agg(aggs), on=ent, how="left")
        future = ev.filter((pl.col(t) >= c) & (pl.col(t) < c + pd.DateOffset(months=1)))
        rows = rows.join(future.group_by(ent).agg(pl.col(scenario["label"]).sum().alias("__label")), on=ent, how="left")
        fill = [
            pl.col(_name(col, fn, w)).fill_null(0)
            for w in scenario["windows"]
            for col, fns in scenario["aggregations"].items()
            for fn in fns
            if fn in ZERO_FILLED
        ]
        frames.append(
            rows.with_columns(
                *fill,
                cutoff=pl.lit(c),
                label=(pl.col("__label").fill_null(0).round(9) > scenario["above"]).cast(pl.Int8),
            ).drop("__n", "__label")
        )
    return pl.concat(frames).collect().to_pandas()


def _polars_agg(pl, column: str, function: str):
    col = pl.col(column)
    return {
        "mean": col.mean(),
        "max": col.max(),
        "min": col.min(),
        "sum": col.sum(),
        "count": col.count(),
        # plain n_unique: these tables have no missing values, so it is exact here and the fastest form
        "std": col.std(),
        "skew": col.skew(bias=False),
        "nunique": col.n_unique(),
    }[function]


SQL_FUNCTIONS = {
    "mean": "avg({c})",
    "max": "max({c})",
    "min": "min({c})",
    "sum": "sum({c})",
    "count": "count({c})",
    "std": "stddev_samp({c})",
    "skew": "skewness({c})",
    "nunique": "count(DISTINCT {c})",
}


def duckdb_query(scenario: dict) -> str:
    """Hand-written SQL: per window, the events range-joined to the cutoffs and grouped by (entity, cutoff);
    the windows joined onto the all-history rows (who is eligible). Plain aggregates, no FILTER clauses:
    DuckDB runs FILTERed DISTINCT aggregates several times slower."""
    ent, t = f'"{scenario["entity"]}"', f'"{scenario["time"]}"'
    cutoffs = ", ".join(f"({i}, TIMESTAMP '{c}')" for i, c in enumerate(cutoffs_of(scenario)))
    total = ', "Quantity" * "UnitPrice" AS total' if scenario["derive"] else ""
    ctes = [f"k(ci, c) AS (VALUES {cutoffs})", f"e AS (SELECT *{total} FROM events WHERE {ent} IS NOT NULL)"]
    outer, joins = [], []
    for j, w in enumerate(scenario["windows"]):
        cond = f"e.{t} < k.c" if w == "all" else f"e.{t} >= k.c - INTERVAL {w} MONTH AND e.{t} < k.c"
        aggs = ", ".join(
            f'{SQL_FUNCTIONS[fn].format(c=f"e.{chr(34)}{col}{chr(34)}")} AS "{_name(col, fn, w)}"'
            for col, fns in scenario["aggregations"].items()
            for fn in fns
        )
        ctes.append(f"w{j} AS (SELECT e.{ent} AS ent, k.ci AS ci, {aggs} FROM e JOIN k ON {cond} GROUP BY 1, 2)")
        outer += [
            f'coalesce(w{j}."{_name(col, fn, w)}", 0) AS "{_name(col, fn, w)}"'
            if fn in ZERO_FILLED
            else f'w{j}."{_name(col, fn, w)}"'
            for col, fns in scenario["aggregations"].items()
            for fn in fns
        ]
        joins.append(f"LEFT JOIN w{j} USING (ent, ci)")
    ctes.append(
        f'lab AS (SELECT e.{ent} AS ent, k.ci AS ci, sum(e."{scenario["label"]}") AS v FROM e JOIN k '
        f"ON e.{t} >= k.c AND e.{t} < k.c + INTERVAL 1 MONTH GROUP BY 1, 2)"
    )
    everyone = f"w{scenario['windows'].index('all')}"  # the all-history rows: who is eligible at each cutoff
    joins = [j for j in joins if not j.startswith(f"LEFT JOIN {everyone} ")]
    return (
        f"WITH {', '.join(ctes)} SELECT {everyone}.ent AS {ent}, k.c AS cutoff, {', '.join(outer)}, "
        f"(round(coalesce(lab.v, 0), 9) > {scenario['above']})::TINYINT AS label "
        f"FROM {everyone} JOIN k USING (ci) {' '.join(joins)} "
        "LEFT JOIN lab USING (ent, ci)"
    )


def run_duckdb(events: pd.DataFrame, scenario: dict) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {THREADS}")
    con.register("events", events)
    return con.execute(duckdb_query(scenario)).df()


CONTENDERS = {"gbpipe": run_ours, "polars": run_polars, "duckdb": run_duckdb}


# ---------------------------------------------------------------- one measured build in a fresh process
def _reset_peak() -> None:
    """Linux: make VmHWM (peak resident size) start again from the current size."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(name: str, scenario_name: str, data: Path, output: Path | None) -> dict:
    # every worker imports the same libraries before its baseline is read, after the allocator options
    # the gbpipe CLI sets (features/__init__.py), so the Polars reference runs with them too, as gbpipe does
    import features

    features.configure_polars_allocator()
    # isort: split
    import duckdb  # noqa: F401
    import polars as pl  # noqa: F401
    import pyarrow as pa

    import features.build  # noqa: F401

    pa.set_memory_pool(pa.system_memory_pool())  # freed read buffers go back to the system, for every contender
    scenario = SCENARIOS[scenario_name]
    imports_mb = _status_mb("VmRSS")
    if name == "polars":
        import polars as pl

        events = pl.read_parquet(data)
        events_mb = events.estimated_size() / 2**20
    else:
        events = pd.read_parquet(data)
        events_mb = events.memory_usage(deep=True).sum() / 2**20
    _reset_peak()
    loaded_mb = _status_mb("VmRSS")
    started = time.perf_counter()
    result = CONTENDERS[name](events, scenario)
    seconds = time.perf_counter() - started
    peak_mb = _status_mb("VmHWM")
    table = one_frame(result)
    if output is not None:
        table.to_parquet(output, index=False)
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_mb,
        "loaded_rss_mb": loaded_mb,
        "imports_rss_mb": imports_mb,
        "events_mb": events_mb,
        "rows": len(table),
        "columns": table.shape[1],
    }


def measure(name: str, scenario_name: str, data: Path, output: Path | None) -> dict:
    env = {**os.environ, "POLARS_MAX_THREADS": str(THREADS), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--worker", name, "--scenario", scenario_name, "--data", str(data)]
    if output is not None:
        cmd += ["--output", str(output)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} on {scenario_name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(scenario: dict, outputs: dict[str, Path]) -> float:
    """Largest relative difference between gbpipe's table and each reference's, over every cell."""
    keys = [scenario["entity"], "cutoff"]
    ours = pd.read_parquet(outputs["gbpipe"])
    ours = ours.assign(cutoff=ours["cutoff"].astype("datetime64[ns]")).sort_values(keys).reset_index(drop=True)
    worst = 0.0
    for name, path in outputs.items():
        if name == "gbpipe":
            continue
        ref = pd.read_parquet(path)
        ref = ref.assign(cutoff=ref["cutoff"].astype("datetime64[ns]"))
        ref[scenario["entity"]] = ref[scenario["entity"]].astype(ours[scenario["entity"]].dtype)
        ref = ref.sort_values(keys).reset_index(drop=True)
        if len(ref) != len(ours) or (ref[keys].to_numpy() != ours[keys].to_numpy()).any():
            raise SystemExit(f"{name}: rows differ from gbpipe's ({len(ref)} vs {len(ours)})")
        for column in ours.columns.drop(keys):
            a, b = ours[column].to_numpy("float64"), ref[column].to_numpy("float64")
            if (np.isnan(a) != np.isnan(b)).any():
                raise SystemExit(f"{name}: column {column} has missing values where gbpipe's has none, or back")
            both = ~np.isnan(a)
            rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1.0)
            worst = max(worst, float(rel.max(initial=0.0)))
    return worst


def dropped(results: dict[str, list[dict]]) -> set[str]:
    """A reference more than twice as slow as the other in round 1 cannot become the reference:
    it is not rerun (its single time is still reported), which keeps the bench to minutes."""
    polars, duckdb = (results[n][0]["seconds"] for n in ("polars", "duckdb"))
    return {"duckdb"} if duckdb > 2 * polars else {"polars"} if polars > 2 * duckdb else set()


def run_scenario(scenario_name: str, data: Path, rounds: int, scratch: Path) -> dict:
    results: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    names = list(CONTENDERS)
    outputs = {name: scratch / f"{scenario_name}_{name}.parquet" for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order between rounds
            if r > 0 and name in dropped(results):
                continue
            results[name].append(measure(name, scenario_name, data, outputs[name] if r == 0 else None))
            print(
                f"  {scenario_name} round {r + 1}/{rounds} {name:7s} {results[name][-1]['seconds']:7.2f}s "
                f"peak {results[name][-1]['peak_rss_mb']:7.0f} MB",
                flush=True,
            )
    worst = compare(SCENARIOS[scenario_name], outputs)
    seconds = {name: statistics.median(r["seconds"] for r in runs) for name, runs in results.items()}
    reference = min(("polars", "duckdb"), key=seconds.get)
    ours = results["gbpipe"]
    summary = {
        "vs_reference_ratio": round(seconds["gbpipe"] / seconds[reference], 3),
        "reference": reference,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in ours), 1),
        "rss_mb_with_events_loaded": round(statistics.median(r["loaded_rss_mb"] for r in ours), 1),
        "rss_mb_of_libraries": round(statistics.median(r["imports_rss_mb"] for r in ours), 1),
        "peak_rss_mb_of_references": {
            n: round(max(r["peak_rss_mb"] for r in results[n]), 1) for n in ("polars", "duckdb")
        },
        "events_mb": round(ours[0]["events_mb"], 1),
        "rows": ours[0]["rows"],
        "columns": ours[0]["columns"],
        "max_relative_difference": worst,
        "rounds": rounds,
    }
    # the build's peak footprint (event table included) over the table's size: the process's peak
    # less what the interpreter and libraries held before the table was read
    summary["peak_vs_events"] = round(
        (summary["peak_rss_mb"] - summary["rss_mb_of_libraries"]) / summary["events_mb"], 2
    )
    # what the build itself adds on top of the loaded table, over the table's size
    summary["build_increment_vs_events"] = round(
        (summary["peak_rss_mb"] - summary["rss_mb_with_events_loaded"]) / summary["events_mb"], 2
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--shuffled",
        action="store_true",
        help="generated events in random order, not time order "
        "(gbpipe then sorts a copy: about one more event table of memory)",
    )
    parser.add_argument("--worker", choices=list(CONTENDERS))
    parser.add_argument("--scenario", choices=list(SCENARIOS))
    parser.add_argument("--data", type=Path)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.scenario, args.data, args.output)))
        return
    report = {}
    with tempfile.TemporaryDirectory(prefix="bench-features-") as scratch:
        if RETAIL.is_file():
            report["retail"] = run_scenario("retail", RETAIL, args.rounds, Path(scratch))
        else:
            print(f"  {RETAIL} missing (run `make data`): retail scenario skipped", flush=True)
        started = time.perf_counter()
        data = events_file(args.events, args.entities, args.shuffled)
        print(
            f"  generated table: {args.events} events, {args.entities} entities, "
            f"{'shuffled' if args.shuffled else 'in time order'} "
            f"({time.perf_counter() - started:.1f}s, cached in {data.parent})",
            flush=True,
        )
        report["generated"] = run_scenario("generated", data, args.rounds, Path(scratch))
    for name, s in report.items():
        print(
            f"{name}: gbpipe {s['seconds']['gbpipe']:.2f}s, polars {s['seconds']['polars']:.2f}s, duckdb "
            f"{s['seconds']['duckdb']:.2f}s -> {s['vs_reference_ratio']:.2f}x the reference ({s['reference']}); "
            f"peak RSS {s['peak_rss_mb']:.0f} MB ({s['rss_mb_of_libraries']:.0f} MB of it libraries): the build's "
            f"footprint is {s['peak_vs_events']:.2f}x the {s['events_mb']:.0f} MB event table (the build adds "
            f"{s['build_increment_vs_events']:.2f}x to the loaded table); "
            f"{s['rows']} rows x {s['columns']} columns, max relative difference {s['max_relative_difference']:.1e}"
        )
    gen = report["generated"]
    print(
        json.dumps(
            {
                "vs_reference_ratio": gen["vs_reference_ratio"],
                "peak_rss_mb": gen["peak_rss_mb"],
                "events_mb": gen["events_mb"],
                "n_events": args.events,
                "n_entities": args.entities,
                "events_in_time_order": not args.shuffled,
                "reference": gen["reference"],
                "seconds": gen["seconds"],
                "peak_vs_events": gen["peak_vs_events"],
                "rss_mb_of_libraries": gen["rss_mb_of_libraries"],
                "rss_mb_with_events_loaded": gen["rss_mb_with_events_loaded"],
                "build_increment_vs_events": gen["build_increment_vs_events"],
                "peak_rss_mb_of_references": gen["peak_rss_mb_of_references"],
                "max_relative_difference": gen["max_relative_difference"],
                "retail": report.get("retail"),
            }
        )
    )


if __name__ == "__main__":
    main()
