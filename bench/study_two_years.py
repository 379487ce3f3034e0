"""Which two-year retail setup to ship: variants of configs/retail.toml, chosen on OOF and backtest scores.

Each variant is the shipped config with `--set` overrides, trained as `gbpipe train` trains it (the
config's parameters, not tuned ones). Printed per variant: the pooled OOF AUC; the OOF AUC over the
training cutoffs every variant has (2010-12-01 .. 2011-11-01), so variants with another first cutoff
compare on the same rows; the forward backtest of the last three training cutoffs (the same rows for
every variant, trained only on rows whose labels were known then: the honest comparison); and the
December 2011 holdout, recorded for the report and never used to choose.

    flock /tmp/gbpipe-bench.lock .venv/bin/python bench/study_two_years.py [--threads 2] [VARIANT ...]

A study, not a timing (outside make bench's bench_*.py glob). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config
from pipeline.train.run import train

COMMON_FROM = "2010-12-01"  # the first cutoff of every variant below
LAGS = 'features.lags=[{column="total", aggregate="sum", months=%d}]'
VARIANTS = {
    "lags6": [LAGS % 6, "features.year_ago="],  # the starting point: one-year retail.toml on two years
    "lags12": ["features.year_ago="],
    "lags12_year_ago": [],  # as shipped
    "lags24_year_ago": [LAGS % 24],
    "lags12_year_ago_from_2010_06": ["features.cutoffs.first=2010-06-01"],
    "lags12_year_ago_from_2010_12": ["features.cutoffs.first=2010-12-01"],
    # the count of the twelve months over the label's threshold, and the latest such month
    "lags12_above300_year_ago": ['features.lags=[{column="total", aggregate="sum", months=12, above=300}]'],
    # the last week and fortnight before the cutoff beside the months (December 2011's label covers 9 days)
    "days_windows_year_ago": ['features.windows=["7d", "14d", 1, 3, 6, 12, "all"]'],
    # the country a customer last bought from, as a category
    "country_year_ago": ['features.aggregations.Country=["last"]'],
    # invoices month by month beside spend
    "invoice_lags_year_ago": [
        'features.lags=[{column="total", aggregate="sum", months=12}, '
        '{column="InvoiceNo", aggregate="nunique", months=12}]'
    ],
    # invoices one year earlier beside spend
    "year_ago_invoices": [
        'features.year_ago=[{column="total", aggregate="sum", windows=[1, 3]}, '
        '{column="InvoiceNo", aggregate="nunique", windows=[1, 3]}]'
    ],
    # days since the last cancellation, and since the first
    "recency_of_cancel_year_ago": ['features.recency_of=["is_cancel"]'],
    # labels over the holdout's own window: the first 9 days after each cutoff, as December 2011's are
    "label_9_days_year_ago": ["features.label.days=9", "features.label.months="],
}


def run_variant(name: str, threads: int, runs_dir: Path) -> dict:
    overrides = [*VARIANTS[name], f"experiment.runs_dir={json.dumps(str(runs_dir))}", f"model.num_threads={threads}"]
    cfg = load_config(ROOT / "configs" / "retail.toml", overrides)
    started = time.perf_counter()
    run = train(cfg, run_id=name)
    scores = json.loads((run / "scores.json").read_text())
    oof = pd.read_parquet(run / "oof.parquet")
    common = oof[oof["row_key"].str.split("@").str[1] >= COMMON_FROM]
    backtest = scores["backtest"]
    return {
        "variant": name,
        "oof": round(scores["oof_score"], 5),
        "oof_common_cutoffs": round(roc_auc_score(common["target"], common["pred"]), 5),
        "backtest_oof": round(backtest["mean_oof_score"], 5),
        "backtest_forward": round(backtest["mean_forward_score"], 5),
        "backtest_gap": round(backtest["mean_gap"], 5),
        # the OOF predictions against labels over the holdout's first days (its labels' window), where the data
        # cuts December short; a variant labelled over that window already is scored on it by `oof`
        "oof_holdout_window": round(scores.get("oof_at_holdout_window", scores)["oof_score"], 5),
        "holdout": round(scores["holdout_score"], 5),
        "rows": scores["n_rows"],
        "features": scores["n_features"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"some of: {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants or list(VARIANTS):
            results.append(run_variant(name, args.threads, Path(tmp)))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    best = max(results, key=lambda r: r["backtest_forward"])
    print(json.dumps({"study": "two_years", "threads": args.threads, "chosen_on": "backtest_forward",
                      "best": best["variant"], "variants": results}))  # fmt: skip


if __name__ == "__main__":
    main()
