"""Where the project and the shared datasets are."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
