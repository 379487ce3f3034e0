"""`gbpipe runs` and `gbpipe report --compare`: runs with their headline numbers, and a leaderboard
with paired bootstrap differences to the best run on the OOF rows all runs share.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.artifacts import atomic_write_bytes, json_bytes
from pipeline.core.errors import ArtifactError, ConfigError
from pipeline.core.intervals import BOOT_SEED, N_BOOT, Interval, PairedDifference, paired_difference, score_interval
from pipeline.core.metrics import GREATER_IS_BETTER, score
from pipeline.core.names import check_output_path

from . import plots
from .page import Figure, Section, Table, Text, to_html, to_json, to_markdown
from .runview import RunView, flatten

IGNORED_KEYS = ("experiment.runs_dir", "experiment.description", "model.num_threads", "params.num_threads")


@dataclass(frozen=True)
class Entry:
    """One run on the leaderboard."""

    run_id: str
    run_dir: Path
    oof_score: float
    shared: Interval
    difference: PairedDifference | None  # to the best run; None for the best itself
    config_diff: dict[str, Any]
    seconds: float | None
    holdout_score: float | None


@dataclass(frozen=True)
class Comparison:
    metric: str
    task: str
    experiments: tuple[str, ...]
    n_shared: int
    entries: tuple[Entry, ...]  # best first
    differing_keys: tuple[str, ...]


def compare_runs(paths: list[Path], n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Comparison:
    """Leaderboard of runs scored on their shared OOF rows, with paired bootstrap differences to the best."""
    views = [RunView(Path(p)) for p in paths]
    _check_comparable(views)
    metric, task = views[0].metric, views[0].task
    shared_ids, y, preds = shared_rows(views)
    scored = [score(metric, y, pred) for pred in preds]
    best = int(np.argmax(scored) if GREATER_IS_BETTER[metric] else np.argmin(scored))
    configs = [flatten({"config": v.config_dict or {}, "params": (v.schema or {}).get("params", {})}) for v in views]
    keys = differing_keys(configs)
    entries = []
    for i, view in enumerate(views):
        interval = score_interval(metric, y, preds[i], scored[i], n_boot, seed)
        diff = (
            None
            if i == best
            else paired_difference(metric, y, preds[i], preds[best], scored[i] - scored[best], n_boot, seed)
        )
        entries.append(
            Entry(
                view.run_id,
                view.dir,
                (view.summary or {}).get("oof_score", float("nan")),
                interval,
                diff,
                {k: configs[i].get(k) for k in keys},
                (view.summary or {}).get("seconds"),
                (view.summary or {}).get("holdout_score"),
            )
        )
    order = [best] + [i for i in np.argsort(scored)[:: -1 if GREATER_IS_BETTER[metric] else 1] if i != best]
    return Comparison(
        metric,
        task,
        tuple(sorted({v.experiment for v in views})),
        len(shared_ids),
        tuple(entries[i] for i in order),
        tuple(keys),
    )


def _check_comparable(views: list[RunView]) -> None:
    if len(views) < 2:
        raise ConfigError(f"--compare needs at least two runs, got {len(views)}")
    names = [str(v.dir) for v in views]
    if len(set(names)) < len(names):
        raise ConfigError(f"--compare got the same run twice: {names}")
    for view in views:
        if view.oof is None:
            raise ArtifactError(
                f"{view.dir} has no OOF predictions (oof.parquet); only training or ensemble runs can be compared"
            )
    pairs = {(v.task, v.metric) for v in views}
    if len(pairs) > 1:
        raise ConfigError(
            "--compare needs runs with the same task and metric; got "
            + ", ".join(f"{v.run_id}: {v.task}/{v.metric}" for v in views)
        )


def shared_rows(views: list[RunView]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The OOF rows every run validated (matched by id), their target and each run's predictions."""
    shared = views[0].oof.ids
    for view in views[1:]:
        shared = np.intersect1d(shared, view.oof.ids)
    if len(shared) == 0:
        raise ArtifactError(
            "the runs share no OOF row ids: they were trained on different data; compare runs of the same experiment"
        )
    ys, preds = [], []
    for view in views:
        where = {v: i for i, v in enumerate(view.oof.ids.tolist())}
        index = np.array([where[v] for v in shared.tolist()])
        ys.append(view.oof.y[index])
        preds.append(view.oof.pred[index])
    for view, y in zip(views[1:], ys[1:]):
        differ = int(np.sum(y != ys[0]))
        if differ:
            raise ArtifactError(
                f"{view.dir} and {views[0].dir} disagree on the target of {differ} of {len(shared)} "
                "shared rows: they were trained on different data"
            )
    return shared, ys[0], preds


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Flattened config keys whose value is not the same in every run (bookkeeping keys left out)."""
    keys = sorted(set().union(*configs))
    differ = [k for k in keys if not k.endswith(IGNORED_KEYS) and len({repr(c.get(k)) for c in configs}) > 1]
    # a LightGBM parameter set in the config also differs in the resolved params: show the resolved one only
    return [
        k
        for k in differ
        if not (k.startswith("config.model.params.") and "params." + k.removeprefix("config.model.params.") in differ)
    ]


def comparison_sections(comp: Comparison) -> tuple[dict[str, Any], list[Section]]:
    """Headline and sections of the comparison page."""
    runs = Section("runs", "Runs")
    runs.add(Table("runs", ["run", "folder"], [[e.run_id, str(e.run_dir)] for e in comp.entries]))
    return _headline(comp), [_leaderboard_section(comp), _config_section(comp), runs]


def _leaderboard_rows(comp: Comparison) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """The leaderboard's table rows and their records for report.json, best first."""
    rows, data = [], []
    for rank, e in enumerate(comp.entries, 1):
        d = e.difference
        rows.append(
            [
                rank,
                e.run_id,
                e.shared.score,
                f"{e.shared.low:.5f} – {e.shared.high:.5f}",
                None if d is None else d.difference,
                "best" if d is None else f"{d.low:+.5f} – {d.high:+.5f}",
                None if d is None else d.p_not_better,
                e.oof_score,
                e.holdout_score,
                e.seconds,
            ]
        )
        data.append(
            {
                "run": e.run_id,
                "run_dir": str(e.run_dir),
                "oof_score": e.oof_score,
                **e.shared.to_dict(),
                "difference": None if d is None else d.difference,
                "difference_ci_low": None if d is None else d.low,
                "difference_ci_high": None if d is None else d.high,
                "p_not_better": None if d is None else d.p_not_better,
                "config_differences": e.config_diff,
                "seconds": e.seconds,
                "holdout_score": e.holdout_score,
            }
        )
    return rows, data


def _leaderboard_section(comp: Comparison) -> Section:
    best = comp.entries[0]
    direction = "higher" if GREATER_IS_BETTER[comp.metric] else "lower"
    rows, data = _leaderboard_rows(comp)
    board = Section("leaderboard", "Leaderboard", data={"entries": data})
    board.add(
        Text(
            f"Scores on the {comp.n_shared:,} OOF rows all runs validated ({direction} is better). "
            f"Δ is each run minus the best, paired: both scored on the same {best.shared.n_boot:,} bootstrap "
            "resamples, so the shared noise of the rows cancels. P(not better) is the share of resamples "
            "in which the run does not beat the best."
        ),
        Figure(
            "leaderboard",
            plots.interval_figure(
                [e.run_id for e in comp.entries],
                [e.shared.score for e in comp.entries],
                [e.shared.low for e in comp.entries],
                [e.shared.high for e in comp.entries],
                f"{comp.metric} on shared OOF rows (95% bootstrap CI)",
                comp.metric,
                highlight=0,
            ),
            "Each run's score on the shared OOF rows with its 95% bootstrap interval; the best highlighted",
        ),
        Table(
            "leaderboard",
            [
                "rank",
                "run",
                comp.metric,
                "95% CI",
                "Δ to best",
                "Δ 95% CI",
                "P(not better)",
                "OOF (all rows)",
                "holdout",
                "seconds",
            ],
            rows,
            "Leaderboard, best first",
            {"P(not better)": "{:.3f}", "seconds": "{:.1f}", "Δ to best": "{:+.5f}"},
        ),
    )
    return board


def _config_section(comp: Comparison) -> Section:
    keys = list(comp.differing_keys)
    configs = Section("config", "Config differences")
    configs.add(
        Table(
            "config_differences",
            ["key", *[e.run_id for e in comp.entries]],
            [[_key_label(k), *[_unset(e.config_diff.get(k)) for e in comp.entries]] for k in keys],
            "Flattened config and LightGBM parameter keys whose values differ",
        )
        if keys
        else Text("The runs' configs and parameters are identical (apart from bookkeeping keys).")
    )
    return configs


def _headline(comp: Comparison) -> dict[str, Any]:
    best = comp.entries[0]
    direction = "higher" if GREATER_IS_BETTER[comp.metric] else "lower"
    return {
        "metric": comp.metric,
        "best_run": best.run_id,
        "score": best.shared.score,
        "ci_low": best.shared.low,
        "ci_high": best.shared.high,
        "n_shared": comp.n_shared,
        "text": f"{best.run_id}: {best.shared.score:.5g} (95% CI {best.shared.low:.5g} – {best.shared.high:.5g})",
        "cards": [
            {
                "label": f"best {comp.metric} · {direction} is better",
                "value": f"{best.shared.score:.5g}",
                "detail": f"run {best.run_id} · 95% CI {best.shared.low:.5g} – {best.shared.high:.5g}",
            },
            {"label": "runs", "value": str(len(comp.entries)), "detail": f"{comp.n_shared:,} shared OOF rows"},
        ],
        "lines": [f"Experiment: {', '.join(comp.experiments)}; task {comp.task}."],
    }


def _diff_text(diff: dict[str, Any]) -> str:
    return ", ".join(f"{_key_label(k)}={'unset' if v is None else v}" for k, v in diff.items())[:160]


def _unset(value: Any) -> Any:
    return "unset" if value is None else value


def _key_label(key: str) -> str:
    """config.cv.n_splits -> cv.n_splits; params.num_leaves (resolved LightGBM) -> lightgbm.num_leaves."""
    if key.startswith("config."):
        return key.removeprefix("config.")
    return "lightgbm." + key.removeprefix("params.") if key.startswith("params.") else key


def write_comparison(comp: Comparison, output: Path | None = None) -> Path:
    """Write compare.html, compare.json and compare.md (with figures/) to `output`
    (default runs/<experiment>/compare/<id>/); returns the HTML path."""
    if output is None:
        key = hashlib.sha256("\n".join(sorted(str(e.run_dir) for e in comp.entries)).encode()).hexdigest()[:12]
        output = comp.entries[0].run_dir.parent / "compare" / key
    else:
        check_output_path(Path(output), "--output", tuple({e.run_dir.parent for e in comp.entries}))
    output = Path(output)
    headline, sections = comparison_sections(comp)
    title = f"compare · {', '.join(comp.experiments)} · {comp.metric}"
    meta = {
        "metric": comp.metric,
        "runs": [str(e.run_dir) for e in comp.entries],
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    subtitle = f"{len(comp.entries)} runs · generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    for section in sections:
        for block in section.figures:
            atomic_write_bytes(output / "figures" / f"{block.name}.png", block.png)
    atomic_write_bytes(output / "compare.json", json_bytes(to_json(title, headline, sections, meta)))
    atomic_write_bytes(output / "compare.md", to_markdown(title, headline, sections, "figures").encode())
    atomic_write_bytes(output / "compare.html", to_html(title, headline, sections, subtitle).encode())
    return output / "compare.html"


def leaderboard_markdown(comp: Comparison) -> str:
    """The leaderboard as a Markdown table for the terminal."""
    lines = [
        f"| rank | run | {comp.metric} (shared rows) | 95% CI | Δ to best [95% CI] | P(not better) | "
        "config differences | seconds |",
        "|---:|---|---:|---|---|---:|---|---:|",
    ]
    for rank, e in enumerate(comp.entries, 1):
        d = e.difference
        delta = "best" if d is None else f"{d.difference:+.5f} [{d.low:+.5f}, {d.high:+.5f}]"
        p = "" if d is None else f"{d.p_not_better:.3f}"
        secs = f"{e.seconds:.1f}" if e.seconds is not None else "-"
        lines.append(
            f"| {rank} | {e.run_id} | {e.shared.score:.5f} | {e.shared.low:.5f} – {e.shared.high:.5f} | "
            f"{delta} | {p} | {_diff_text(e.config_diff).replace('|', '/')} | {secs} |"
        )
    return (
        "\n".join(lines)
        + f"\n\n{comp.n_shared:,} shared OOF rows; paired bootstrap ({comp.entries[0].shared.n_boot:,} resamples)\n"
    )
