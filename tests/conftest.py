import os
from pathlib import Path

import pytest

# ../shared/assets beside the checkout: real tokenizer files (here and in CI).
ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"


def require_file(path: Path) -> Path:
    """Skip (with the reason) when a needed file is absent locally; under CI=true that is a failure."""
    if not Path(path).is_file():
        message = f"needed file {path} is missing"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return Path(path)
