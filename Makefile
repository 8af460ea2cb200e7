# halswarm developer commands. `make demo` and `make test` work on a fresh machine
# with python3 (>= 3.11) and npm on PATH; everything else is installed here.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OPENCODE_VERSION := 1.18.33
TOOLS := .tools
OPENCODE := $(TOOLS)/node_modules/.bin/opencode
PY_SOURCES := halswarm tests bench

.PHONY: help venv demo test lint typecheck unit opencode bench chaos clean

help:
	@echo "make demo    - set up .venv and run a local supervisor + agent with simulated sessions"
	@echo "make test    - set up everything and run lint, type checks and the tests (what CI runs)"
	@echo "make lint    - ruff, formatting, flake8-async and mypy only"
	@echo "make bench   - run the benchmarks under bench/ and print their figures (docs/PERFORMANCE.md)"
	@echo "make chaos   - the long chaos suite (the short one runs in make test)"
	@echo "make clean   - remove .venv, .tools and the demo state in .halswarm"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("halswarm needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(OPENCODE):
	@command -v npm >/dev/null || { echo "npm is required to install opencode-ai@$(OPENCODE_VERSION)"; exit 1; }
	npm install --prefix $(TOOLS) --no-audit --no-fund --silent opencode-ai@$(OPENCODE_VERSION)
	$(OPENCODE) --version

opencode: $(OPENCODE)

demo: $(STAMP)
	$(BIN)/python -m halswarm.demo --dir .halswarm

lint: $(STAMP)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	@# flake8-async builds a libcst tree per file (~150 ms each): one batch per CPU.
	git ls-files -co --exclude-standard -z -- '*.py' | xargs -0 -P "$$(nproc)" -n 40 $(BIN)/flake8-async --enable=ASYNC102,ASYNC119,ASYNC120,ASYNC900
	$(BIN)/mypy

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(OPENCODE)
	OPENCODE_BIN=$(abspath $(OPENCODE)) $(BIN)/pytest -q

test: lint unit

bench: $(STAMP)
	$(BIN)/python -m bench

chaos: $(STAMP)
	HALSWARM_CHAOS=long $(BIN)/pytest -q -o faulthandler_timeout=0 -m chaos tests/chaos

clean:
	rm -rf $(VENV) $(TOOLS) .halswarm .mypy_cache .ruff_cache
