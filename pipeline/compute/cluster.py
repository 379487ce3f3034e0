"""A Dask cluster to run a stage's work on: reached at a scheduler's address, or started here as a LocalCluster.

Without one gbpipe runs in-process (the embedded default). With one, the client process (this one) still
reads the config, plans the work and writes every run-folder file; workers only compute and send back numbers
and LightGBM model text, over Dask's own protocol. Nothing a worker sends is ever written as pickle.

Workers must run the gbpipe and library versions this process runs: a fold trained with another LightGBM
gives other trees, so a mismatch is refused at connection, with the versions named.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.core.cores import available_cores
from pipeline.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from distributed import Client

# What must match between this process and every worker for a task to give the bytes it gives here.
CHECKED_PACKAGES = ("gbpipe", "lightgbm", "numpy", "pandas", "pyarrow", "polars", "scikit-learn", "dask", "distributed")
CONNECT_TIMEOUT = "5s"
_LOCAL = re.compile(r"local:(\d+)")
_REMOTE = re.compile(r"(tcp|tls|inproc|ucx|ws|wss)://[^\s/]+")


@dataclass(frozen=True)
class Cluster:
    """An open Dask client and what a task may use on its worker: LightGBM threads per running task, chosen
    so that the tasks of one host never run more threads than it has cores."""

    client: Client
    address: str
    n_workers: int
    threads_per_task: int
    held: list = field(default_factory=list, compare=False, repr=False)  # the data sent last: see hold()

    def describe(self) -> str:
        return (
            f"Dask cluster {self.address}: {self.n_workers} workers, {self.threads_per_task} LightGBM "
            f"thread{'s' if self.threads_per_task > 1 else ''} per task"
        )

    def hold(self, futures: list) -> list:
        """Keep the futures of the data sent last alive until other data is sent. The data is sent under keys made
        from its content, so the next stage step sending the same arrays (an ensemble's next member, a study's
        next trial) gets these futures back instead of sending the data again."""
        self.held[:] = futures
        return futures


def quiet_native_logs() -> None:
    """Runs in a worker's task thread. LightGBM's library keeps its log callback per thread and sets it at import,
    in the thread that imported it: in a Dask worker's task threads its notes would go straight to stdout. Set
    there, they go through the Python logger the QuietLightGBM plugin (compute/_worker.py) installed."""
    import lightgbm as lgb

    lgb.basic._LIB.LGBM_RegisterLogCallback(lgb.basic._LIB.callback)


def as_sent(value: Any) -> Any:
    """Runs on a worker: the value a task was submitted with, kept there as the task's result. Data sent this way
    is a task the scheduler can run again when the worker holding it dies; scattered data would be lost for good."""
    return value


def results_in_order(client: Client, tasks: Iterable[tuple[Any, Callable, tuple]], in_flight: int) -> Iterator[tuple]:
    """Each (label, function, arguments) of `tasks` run as a task, at most `in_flight` at once (the arguments are
    made only when a task can start), and (label, result) yielded in the order given, each result let go of on its
    worker once fetched; an error or Ctrl-C cancels what is still running."""
    running: deque = deque()

    def take() -> tuple:
        label, future = running.popleft()
        result = future.result()
        future.release()
        return label, result

    try:
        for label, function, arguments in tasks:
            running.append((label, client.submit(function, *arguments, pure=False)))
            if len(running) >= in_flight:
                yield take()
        while running:
            yield take()
    finally:
        client.cancel([future for _, future in running])


def check_address(address: str, where: str) -> str:
    """`local:N` (N >= 1) or a scheduler URL such as tcp://host:8786; anything else is a usage error."""
    match = _LOCAL.fullmatch(address)
    if match is not None and int(match.group(1)) >= 1:
        return address
    if _REMOTE.fullmatch(address) is not None:
        return address
    raise ConfigError(
        f"{where}: {address!r} is not a Dask cluster address; give a scheduler URL such as tcp://host:8786 "
        "(tls:// for a TLS cluster) or local:N to start N single-threaded worker processes here (N >= 1)"
    )


@contextmanager
def open_cluster(address: str | None, where: str = "--cluster") -> Iterator[Cluster | None]:
    """The cluster at `address` for the duration of a stage (None: in-process). A LocalCluster started here is
    shut down on exit; a remote one is only disconnected from."""
    if address is None:
        yield None
        return
    check_address(address, where)
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            f"{where} {address}: Dask is not installed; install gbpipe with its dask extra "
            "(pip install 'gbpipe[dask]') or run without a cluster"
        ) from None
    local = _LOCAL.fullmatch(address)
    with _quiet_dask_logs(), _worker_failures(distributed, address):
        if local is not None:
            with _local_client(distributed, int(local.group(1))) as client:
                yield _checked(client, address, where, own_workers=True)
        else:
            with _remote_client(distributed, address, where) as client:
                yield _checked(client, address, where)


@contextmanager
def _worker_failures(distributed, address: str) -> Iterator[None]:
    """A task that took its workers down again and again (out of memory, most often) ends the stage with what
    Dask knows, not a traceback."""
    try:
        yield
    except distributed.KilledWorker as error:
        raise DataError(
            f"--cluster {address}: a task ended its worker each time it ran ({error}); most often the worker ran "
            "out of memory: give the workers more memory (dask worker --memory-limit), or use fewer, larger "
            "workers, or read the training table in batches (data.batch_rows) so each fold trains across them"
        ) from None


@contextmanager
def _local_client(distributed, n_workers: int) -> Iterator[Client]:
    # Worker processes, not threads: LightGBM's thread cap is process-wide and each worker sets its own.
    cluster = distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        worker_dashboard_address=None,
        protocol="tcp://",
        silence_logs=logging.CRITICAL,  # the workers share this terminal: their start and stop are not progress
    )
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()


@contextmanager
def _remote_client(distributed, address: str, where: str) -> Iterator[Client]:
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (TypeError, ValueError) as error:  # tls:// without certificates, for one
        raise ConfigError(
            f"{where} {address}: Dask cannot connect with this configuration ({error}); for a tls:// address give "
            "the client its certificates through DASK_DISTRIBUTED__COMM__TLS__CA_FILE, "
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT and DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"
        ) from None
    except (OSError, TimeoutError) as error:
        raise ConfigError(
            f"{where} {address}: no Dask scheduler answered within {CONNECT_TIMEOUT} ({error}). Start one there "
            "(`dask scheduler`, then `dask worker ADDRESS` on each machine), check the host, port and firewall, "
            "or use --cluster local:2 to start workers on this machine"
        ) from None
    try:
        yield client
    finally:
        client.close()


def _checked(client: Client, address: str, where: str, own_workers: bool = False) -> Cluster:
    info = client.scheduler_info(n_workers=-1)["workers"]
    if not info:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            raise ConfigError(
                f"{where} {address}: the scheduler answers but no worker joined it within {CONNECT_TIMEOUT}; start "
                f"workers (`dask worker {address}` on each machine) and run again"
            ) from None
        info = client.scheduler_info(n_workers=-1)["workers"]
    refuse_mismatched_workers(local_versions(), _worker_versions(client), f"{where} {address}")
    from ._worker import QuietLightGBM  # imports distributed, which only a cluster needs

    client.register_plugin(QuietLightGBM(own_stdout=own_workers), name="gbpipe-quiet-lightgbm")
    return Cluster(client, address, len(info), threads_per_task(client, info))


def local_versions() -> dict[str, str]:
    return {name: _version(name) for name in CHECKED_PACKAGES}


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _worker_versions(client: Client) -> dict[str, dict[str, str]]:
    """Each worker's versions, asked through the standard library only, so a worker without gbpipe answers too."""
    per_package = {name: client.run(importlib.metadata.version, name, on_error="return") for name in CHECKED_PACKAGES}
    workers = sorted({w for answers in per_package.values() for w in answers})
    return {w: {name: _answer(per_package[name].get(w)) for name in CHECKED_PACKAGES} for w in workers}


def _answer(value: object) -> str:
    return value if isinstance(value, str) else "not installed"


def refuse_mismatched_workers(mine: dict[str, str], workers: dict[str, dict[str, str]], address: str) -> None:
    """Exit 2 naming every worker whose versions differ from this process's (or that lacks gbpipe); `address` is
    the setting that named the cluster and its value."""
    problems = []
    for worker, versions in sorted(workers.items()):
        differ = [f"{n} {versions.get(n)} (here {want})" for n, want in mine.items() if versions.get(n) != want]
        if differ:
            problems.append(f"{worker}: " + ", ".join(differ))
    if problems:
        raise ConfigError(
            f"{address}: workers run other versions than this process, so their models would differ: "
            + "; ".join(problems)
            + ". Install the same versions on every worker (pip install -c constraints.txt 'gbpipe[dask]')"
        )


def threads_per_task(client: Client, info: dict[str, dict]) -> int:
    """LightGBM threads for one task: a host's cores shared by every task its workers run at once."""
    cores = client.run(available_cores)
    busy: dict[str, int] = {}
    for details in info.values():
        busy[details["host"]] = busy.get(details["host"], 0) + int(details.get("nthreads", 1))
    shares = [max(1, cores.get(w, 1) // busy[d["host"]]) for w, d in info.items()]
    return min(shares) if shares else 1


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Dask logs every worker start and stop at INFO, and leaves sockets for the garbage collector to close (a
    ResourceWarning each); a stage's progress and warnings stay gbpipe's own."""
    names = ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker", "distributed.core")
    loggers = [logging.getLogger(n) for n in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ResourceWarning)
            # A scheduler started here takes another port for its HTTP server when another cluster has 8787.
            warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
            # The run's data goes to the scheduler as tasks on purpose (see send_run_data).
            warnings.filterwarnings("ignore", message=r"Sending large graph")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
