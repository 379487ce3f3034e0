"""What a `gbpipe auto` run did, step by step: the record auto/steps.json keeps (rewritten after every step, so
a killed run keeps it too) and the progress line each step prints."""

from __future__ import annotations

import math
from typing import Any

from pipeline.core.budget import Clock
from pipeline.core.progress import Progress
from pipeline.core.run_folder import RunWriter

PLAN = "auto/plan.json"  # written first: marks an unfinished run as an auto run for --resume
STEPS = "auto/steps.json"
# How a step ended: trained or fitted now; reused (from this run's unfinished folder, the member cache or the
# study); skipped (its estimate did not fit the time left); stopped (started, then stopped by the clock or by
# an interruption); left out (not for this task, or its library is not installed).
STATUSES = ("ran", "reused", "skipped", "stopped", "left out")


class StepLog:
    """The steps of one run, in order, each with its status, estimate, duration and the time left after it."""

    def __init__(self, clock: Clock, progress: Progress, writer: RunWriter):
        self.clock, self.progress, self.writer = clock, progress, writer
        self.steps: list[dict[str, Any]] = []

    def record(self, kind: str, name: str, status: str, detail: str = "", **fields: Any) -> None:
        left = self.clock.left()
        entry = {
            "step": len(self.steps) + 1,
            "kind": kind,
            "name": name,
            "status": status,
            **({"detail": detail} if detail else {}),
            **fields,
            "elapsed_seconds": self.clock.elapsed(),
            "left_seconds": left if math.isfinite(left) else None,
        }
        self.steps.append(entry)
        text = f"{kind} {name}: {status}" + (f" ({detail})" if detail else "")
        self.progress.budget_step(entry["step"], text, entry["elapsed_seconds"], left)
        self.writer.write_json(STEPS, {"finished": False, "steps": self.steps})

    def names(self, kind: str, status: str) -> list[str]:
        return [s["name"] for s in self.steps if s["kind"] == kind and s["status"] == status]

    def document(self, summary: dict[str, Any]) -> dict[str, Any]:
        """auto/steps.json of the finished run: the summary first, then every step."""
        return {"finished": True, **summary, "steps": self.steps}
