"""The experiment config: TOML read and validated once at the edge into frozen objects (experiment.py),
the sections of the later stages (sections.py), and where its paths may point (paths.py)."""

from .experiment import (
    ROW_ID,
    SKLEARN_PREFIX,
    Config,
    DataSection,
    dump_config_toml,
    load_config,
    read_params_file,
    validate_config,
)

__all__ = [
    "ROW_ID",
    "SKLEARN_PREFIX",
    "Config",
    "DataSection",
    "dump_config_toml",
    "load_config",
    "read_params_file",
    "validate_config",
]
