"""`gbpipe drift`: are new rows like the training rows? Per feature on the run's reference bins (measures),
the reference itself, saved at training or rebuilt (reference), a train-vs-new classifier (adversarial), drift
over a [features] experiment's cutoffs (cutoffs), charts (plots), the stage that writes drift/ into a run
(run), and the check `gbpipe predict` runs over its chunks (monitor)."""

from pipeline.core.lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "run_drift": ".run",
        "DriftMonitor": ".monitor",
        "DriftCheck": ".monitor",
        "BinCounter": ".measures",
        "psi": ".measures",
        "kl_divergence": ".measures",
        "adversarial_validation": ".adversarial",
        "cutoff_drift": ".cutoffs",
    },
)
