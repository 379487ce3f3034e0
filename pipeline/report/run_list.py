"""`gbpipe runs`: an experiment's runs, newest first, with their headline numbers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.artifacts import LATEST, MANIFEST
from pipeline.core.errors import ConfigError, GbpipeError

from .runview import RunView


@dataclass(frozen=True)
class RunSummary:
    """The headline numbers of one run, as `gbpipe runs` lists them."""

    run_id: str
    run_dir: Path
    metric: str
    oof_score: float | None
    ci_low: float | None
    ci_high: float | None
    holdout_score: float | None
    n_rows: int | None
    n_features: int | None
    seconds: float | None
    config_hash: str
    stages: tuple[str, ...]
    latest: bool


def run_dirs(exp_dir: Path) -> list[Path]:
    """Published runs of an experiment folder, newest first (by when their manifest was written)."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ConfigError(f"experiment folder {exp_dir} not found; train a run first (`gbpipe train --config ...`)")
    found = [p for p in exp_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: ((p / MANIFEST).stat().st_mtime, p.name), reverse=True)


def summarize(view: RunView, latest: bool = False) -> RunSummary:
    scores = view.summary or {}
    headline = (view.json("report.json") or {}).get("headline", {})
    return RunSummary(
        view.run_id,
        view.dir,
        view.metric,
        scores.get("oof_score"),
        headline.get("ci_low"),
        headline.get("ci_high"),
        scores.get("holdout_score"),
        scores.get("n_rows"),
        scores.get("n_features"),
        scores.get("seconds"),
        str(view.manifest.get("config_hash", ""))[:8],
        tuple(view.stages),
        latest,
    )


def list_runs(exp_dir: Path) -> list[RunSummary]:
    """Every published run of the experiment folder with its headline numbers, newest first."""
    exp_dir = Path(exp_dir)
    latest = (exp_dir / LATEST).read_text().strip() if (exp_dir / LATEST).is_file() else None
    summaries = []
    for path in run_dirs(exp_dir):
        try:
            summaries.append(summarize(RunView(path), latest=path.name == latest))
        except GbpipeError as exc:  # one damaged run must not hide the others
            summaries.append(
                RunSummary(
                    path.name,
                    path,
                    f"unreadable: {exc}"[:60],
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    "",
                    (),
                    path.name == latest,
                )
            )
    return summaries


def runs_text(summaries: list[RunSummary]) -> str:
    """An aligned plain-text table of runs for the terminal."""
    header = ["run", "metric", "OOF", "95% CI", "holdout", "rows", "features", "seconds", "config", "stages"]
    rows = [
        [
            ("* " if s.latest else "  ") + s.run_id,
            s.metric,
            _num(s.oof_score),
            f"{s.ci_low:.5g} – {s.ci_high:.5g}" if s.ci_low is not None and s.ci_high is not None else "-",
            _num(s.holdout_score),
            _int(s.n_rows),
            _int(s.n_features),
            f"{s.seconds:.1f}" if s.seconds is not None else "-",
            s.config_hash,
            ",".join(s.stages),
        ]
        for s in summaries
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines) + "\n(* = LATEST; 95% CI from the run's report.json, `gbpipe report --run DIR` adds it)\n"


def _num(value: float | None) -> str:
    return f"{value:.5g}" if value is not None else "-"


def _int(value: int | None) -> str:
    return f"{value:,}" if value is not None else "-"
