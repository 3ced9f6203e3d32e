#!/usr/bin/env bash
# The GPU check (tests/gpu_check.py): run it as is on a machine with one CUDA GPU; about 2-8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
make setup >/dev/null
exec .venv/bin/python tests/gpu_check.py --device cuda "$@"
