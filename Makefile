# One entry point for set-up, training and tests. Every target creates the virtual
# environment on first use, so on a fresh machine `make train` or `make test` is all it takes.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# Test files run on this many processes (pytest-xdist, a file per process at a time): the slow
# tests mostly wait on subprocesses and a Slurm scheduler, so two overlap well on 2 cores.
TEST_WORKERS ?= 2

.PHONY: install train test test-fast lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,sweep,decode,export]"
	touch $(STAMP)

install: $(STAMP)

# The quick start: the small model on the embedded Spanish corpus, about 10 minutes on 2 cores.
train: $(STAMP)
	$(PY) train.py model=ds2_small optim.lr=1.5e-3 trainer.max_minutes=9 $(ARGS)

# The whole suite, slow tests included (what .ci/run calls), after the linter and the formatter.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf outputs .pytest_cache .ruff_cache
