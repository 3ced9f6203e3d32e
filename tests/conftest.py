import os
from pathlib import Path

import pytest

# Real tokenizer files, kept in the repository with their provenance (tests/assets/README.md).
ASSETS = Path(__file__).resolve().parent / "assets"


def require_file(path: Path) -> Path:
    """Skip (with the reason) when a fetched file (`make data`) is absent locally; under CI=true that is a failure."""
    if not Path(path).is_file():
        message = f"needed file {path} is missing"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return Path(path)
