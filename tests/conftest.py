import os
from pathlib import Path

import pytest

# Real tokenizer files, kept in the repository with their provenance (tests/assets/README.md).
ASSETS = Path(__file__).resolve().parent / "assets"


def skip_or_fail(message: str):
    """Skip locally (with the reason); under CI=true a skip would prove nothing, so it is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_file(path: Path) -> Path:
    """Skip when a fetched file (`make data`) is absent locally; under CI=true that is a failure."""
    if not Path(path).is_file():
        skip_or_fail(f"needed file {path} is missing")
    return Path(path)
