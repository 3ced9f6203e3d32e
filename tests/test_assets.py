"""The tokenizer files in tests/assets are the ones their README describes (sha256 as recorded there)."""
import hashlib
import re

from conftest import ASSETS


def test_every_asset_matches_its_recorded_sha256():
    recorded = dict(re.findall(r"^\| `([^`]+)` \|.*\| ([0-9a-f]{64}) \|$", (ASSETS / "README.md").read_text(), re.M))
    files = sorted(str(p.relative_to(ASSETS)) for p in ASSETS.rglob("*") if p.is_file() and p.name != "README.md")
    assert sorted(recorded) == files == ["mistral/tokenizer.model", "t5/spiece.model"]
    for name, sha256 in recorded.items():
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == sha256, name
