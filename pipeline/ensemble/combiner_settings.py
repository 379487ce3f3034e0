"""What fitting a combiner needs to know, read from the config's [ensemble] section by the caller; shared
by the combiners and the stacking meta-models."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CombinerSettings:
    """What fitting needs to know, read from the config's [ensemble] section by the caller."""

    task: str
    metric: str
    n_classes: int = 1
    vote_weights: tuple[float, ...] | None = None
    blend_on: str = "proba"
    greedy_iterations: int = 50
    stack_model: str = "linear"
    stack_regularization: float = 1.0
    stack_lgb_rounds: int = 200
    raw_columns: tuple[int, ...] = ()
    seed: int = 42
    num_threads: int = 1
