"""What gbpipe sets up on every worker of a cluster it connects to, replaced workers included."""

from __future__ import annotations

import logging
import os

from distributed import WorkerPlugin


class QuietLightGBM(WorkerPlugin):
    """LightGBM's notes on a worker (ports bound, ranks connected) go to a logger that keeps only errors: otherwise
    the workers of `local:N` print them into the client's terminal, -q or not. The network's listening thread
    prints straight to stdout, so the workers gbpipe starts itself (`local:N`, `own_stdout`) also send their
    stdout to /dev/null; a cluster's own workers keep theirs (it goes to their logs, not to this terminal)."""

    def __init__(self, own_stdout: bool = False):
        self.own_stdout = own_stdout

    def setup(self, worker) -> None:
        import lightgbm

        logger = logging.getLogger("gbpipe.worker.lightgbm")
        logger.setLevel(logging.ERROR)
        lightgbm.register_logger(logger)
        if self.own_stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
