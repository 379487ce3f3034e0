"""The Optuna study behind `gbpipe tune`: fingerprint, budget, dead workers, sampler, pruner (its storage:
storage.py).

Several processes (one machine: the journal file; several machines: one PostgreSQL database) share
one study. Each trial records which worker runs it and a heartbeat, so a trial left RUNNING by a
killed worker is recognised and marked FAIL; the trial-count budget is shared through the storage's
trial numbers, so no trial is lost or run twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from pipeline.config.sections import TuneSection
from pipeline.core.errors import ConfigError

FINGERPRINT_ATTR = "gbpipe_fingerprint"
WORKER_ATTR = "gbpipe_worker"
HEARTBEAT_ATTR = "gbpipe_heartbeat"
EXCLUDED_ATTR = "gbpipe_excluded"  # a FAIL that does not count toward the budget (dead worker, surplus)
REASON_ATTR = "fail_reason"
HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 120.0  # a trial on another machine with no heartbeat for this long is dead


# ---- the study and its fingerprint ----
def open_study(
    storage: BaseStorage,
    name: str,
    fingerprint: dict[str, Any],
    resume: bool,
    new_study: bool,
    direction: str,
    sampler: BaseSampler,
    pruner: optuna.pruners.BasePruner,
    where: str,
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it for --resume after checking its fingerprint; returns (study, fresh):
    fresh when this call started it, so it queues the first (default) trial."""
    exists = name in optuna.get_all_study_names(storage)
    if exists and new_study:
        optuna.delete_study(study_name=name, storage=storage)
        exists = False
    created = False
    if exists and not resume:
        n = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
        if n:
            raise ConfigError(
                f"study {name!r} in {where} already has {n} trials; continue it with --resume, "
                "start over with --new-study, or pick another --study-name"
            )
        created = True  # an empty study (its creator stopped at once) is started afresh
    study = None
    if not exists:
        try:  # the storage lets exactly one of several workers started together create the study
            study = optuna.create_study(
                storage=storage, study_name=name, direction=direction, sampler=sampler, pruner=pruner
            )
            created = True
        except DuplicatedStudyError:
            pass
    if study is None:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    check_fingerprint(study, fingerprint, where)
    return study, created


def check_fingerprint(study: optuna.Study, fingerprint: dict[str, Any], where: str) -> None:
    """Store the fingerprint on a new study; refuse to continue one whose data, folds, space or metric changed."""
    saved = study.user_attrs.get(FINGERPRINT_ATTR)
    if saved is None:
        study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
        return
    changed = [
        describe_change(key, saved.get(key), fingerprint.get(key))
        for key in sorted(set(saved) | set(fingerprint))
        if saved.get(key) != fingerprint.get(key)
    ]
    if changed:
        raise ConfigError(
            f"study {study.study_name!r} in {where} was started with other settings, so its trials "
            "do not compare with new ones:\n  "
            + "\n  ".join(changed)
            + "\nresume with the original config, or pass --new-study to start over"
        )


def describe_change(key: str, before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        parts = [
            f"{k}: {before.get(k, '(absent)')} -> {after.get(k, '(absent)')}"
            for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)
        ]
        return f"{key} changed: " + "; ".join(parts)
    return f"{key} changed: {before} -> {after}"


# ---- workers ----
@dataclass(frozen=True)
class Worker:
    """Who runs a trial: enough to tell later whether that process is still alive."""

    host: str
    boot_id: str
    pid: int
    start_ticks: int

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "boot_id": self.boot_id, "pid": self.pid, "start_ticks": self.start_ticks}

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"


def this_worker() -> Worker:
    pid = os.getpid()
    return Worker(socket.gethostname(), _boot_id(), pid, _start_ticks(pid) or 0)


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _start_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def process_alive(pid: int, start_ticks: int) -> bool:
    """Whether the process is running and is the same one (pids are reused); zombies count as dead."""
    fields = _proc_stat(pid)
    if fields is not None:
        return fields[0] != "Z" and (not start_ticks or int(fields[19]) == start_ticks)
    if Path("/proc/self/stat").exists():
        return False
    try:  # no /proc (not Linux): existence is all we can check
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def death_reason(trial: FrozenTrial, me: Worker, now: float) -> str | None:
    """Why a RUNNING trial's worker is known dead, or None while it may be alive."""
    owner = trial.user_attrs.get(WORKER_ATTR)
    if owner and owner.get("host") == me.host and owner.get("boot_id") == me.boot_id:
        if process_alive(int(owner["pid"]), int(owner.get("start_ticks") or 0)):
            return None
        return f"worker process {owner['host']}:{owner['pid']} is gone (killed or crashed) while running this trial"
    last = trial.user_attrs.get(HEARTBEAT_ATTR) or (owner or {}).get("started")
    if last is None:
        last = trial.datetime_start.timestamp() if trial.datetime_start else now
    if now - float(last) > STALE_SECONDS:
        who = f"{owner['host']}:{owner['pid']}" if owner else "an unknown worker"
        return f"no heartbeat from {who} for {now - float(last):.0f}s (limit {STALE_SECONDS:.0f}s): presumed dead"
    return None


def exclude_trial(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """Mark a trial FAIL with its reason, excluded from the budget; False if it had finished meanwhile."""
    storage = study._storage  # the public API cannot fail another process's trial
    try:
        storage.set_trial_user_attr(trial_id, REASON_ATTR, reason)
        storage.set_trial_user_attr(trial_id, EXCLUDED_ATTR, True)
        return storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def fail_dead_trials(study: optuna.Study, me: Worker) -> list[int]:
    """Mark FAIL every RUNNING trial whose worker is dead; returns their numbers."""
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = death_reason(trial, me, now)
        if reason and exclude_trial(study, trial._trial_id, reason):
            failed.append(trial.number)
    return failed


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial_ids: list[int], me: Worker) -> Iterator[None]:
    """Tag the trials with their worker and keep their heartbeats fresh while they run (or wait in a batch)."""
    storage = study._storage  # Optuna's public API cannot write attributes from a background thread
    for trial_id in trial_ids:
        storage.set_trial_user_attr(trial_id, WORKER_ATTR, {**me.to_dict(), "started": time.time()})
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            for trial_id in trial_ids:
                with contextlib.suppress(Exception):  # a missed beat (or a trial told meanwhile): the rest go on
                    storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

    thread = threading.Thread(target=beat, name=f"gbpipe-heartbeat-{trial_ids[0]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# ---- the shared budget ----
def counts_toward_budget(trial: FrozenTrial) -> bool:
    """Finished trials count, except FAILs excluded for a dead worker or a surplus claim."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(EXCLUDED_ATTR)


def claims_slot(trial: FrozenTrial) -> bool:
    return counts_toward_budget(trial) or trial.state in (TrialState.RUNNING, TrialState.WAITING)


@dataclass(frozen=True)
class Budget:
    """How far the study is: finished trials count toward n_trials; running ones hold a slot."""

    complete: int
    pruned: int
    failed: int
    excluded: int
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def taken(self) -> int:
        """Slots finished or being run. Queued (WAITING) trials are not counted: the next ask() runs them,
        so the default trial queued by the first call runs even when the budget is a single trial."""
        return self.finished + self.running


def budget_of(trials: list[FrozenTrial]) -> Budget:
    def count(state: TrialState, excluded: bool = False) -> int:
        return sum(1 for t in trials if t.state == state and bool(t.user_attrs.get(EXCLUDED_ATTR)) == excluded)

    return Budget(
        count(TrialState.COMPLETE),
        count(TrialState.PRUNED),
        count(TrialState.FAIL),
        count(TrialState.FAIL, excluded=True),
        count(TrialState.RUNNING),
        count(TrialState.WAITING),
    )


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether n_trials slots were already claimed by trials numbered before this one (a race between
    workers); storage-assigned numbers order the claims the same way for every worker."""
    earlier = sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and claims_slot(t))
    return earlier >= n_trials


# ---- sampler and pruner ----
def trial_seed(seed: int, number: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{number}".encode()).digest()[:4], "little")


class TrialSeededTPE(BaseSampler):
    """Multivariate TPE whose randomness comes from (seed, trial number).

    Concurrent workers never share a random stream (trial numbers are unique), and a single worker
    with the same seed and history proposes the same parameters, run after run.
    """

    def __init__(self, seed: int, n_startup_trials: int):
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self._tpe = self._make(seed)

    def _make(self, seed: int) -> TPESampler:
        return TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True, constant_liar=True)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe = self._make(trial_seed(self.seed, trial.number))
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()


def make_pruner(tune: TuneSection) -> optuna.pruners.BasePruner:
    """Pruning on the running OOF score reported after each fold (step = folds done)."""
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=0)
    if tune.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()
