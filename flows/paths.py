"""Where the project is: relative paths of deployments and defaults are taken from its root (no Prefect here, so
the command line can use it before anything heavy loads)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def project_path(path: str | Path) -> Path:
    """An absolute path; relative ones are taken from the project root, where deployments run."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path
