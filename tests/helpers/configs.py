"""Experiment configs for the tests: a TOML in tmp_path with fast model defaults."""

from __future__ import annotations

from pathlib import Path

import tomli_w


def write_config(tmp_path: Path, name: str = "exp", **sections) -> Path:
    """Write an experiment TOML in tmp_path with runs under tmp_path/runs and fast model defaults."""
    config = {"experiment": {"name": name, "runs_dir": str(tmp_path / "runs")}}
    config["model"] = {
        "num_boost_round": 200,
        "early_stopping_rounds": 20,
        "num_threads": 1,
        "params": {"learning_rate": 0.1},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    return path
