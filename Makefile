# halswarm developer commands. `make demo` and `make test` work on a fresh machine
# with python3 (>= 3.11) and npm on PATH; everything else is installed here.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OPENCODE_VERSION := 1.18.33
TOOLS := .tools
OPENCODE := $(TOOLS)/node_modules/.bin/opencode
# promtool (Debian's prometheus package) checks /metrics in the tests; extracted, not installed.
PROMTOOL := $(TOOLS)/promtool
PY_SOURCES := halswarm tests bench deploy

.PHONY: help venv demo test lint typecheck unit opencode promtool bench chaos clean

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

# `apt-get download` needs no root, only package lists: a fresh CI machine (root) may have
# none, so refresh them once if the package is unknown. Idempotent: the binary is the target.
$(PROMTOOL):
	@command -v apt-get >/dev/null || { echo "promtool: apt-get not found (install Prometheus's promtool as $(PROMTOOL))"; exit 1; }
	@mkdir -p $(TOOLS)/promtool.d
	@if ! apt-cache show prometheus >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq; \
		else echo "promtool: no apt package lists; run 'sudo apt-get update' (or install promtool as $(PROMTOOL))"; exit 1; fi; \
	fi
	cd $(TOOLS)/promtool.d && rm -f prometheus_*.deb && apt-get download -qq prometheus
	dpkg-deb -x $(TOOLS)/promtool.d/prometheus_*.deb $(TOOLS)/promtool.d/root
	cp $(TOOLS)/promtool.d/root/usr/bin/promtool $(PROMTOOL)
	rm -rf $(TOOLS)/promtool.d
	$(PROMTOOL) --version

promtool: $(PROMTOOL)

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

unit: $(STAMP) $(OPENCODE) $(PROMTOOL)
	OPENCODE_BIN=$(abspath $(OPENCODE)) PROMTOOL_BIN=$(abspath $(PROMTOOL)) $(BIN)/pytest -q

test: lint unit

bench: $(STAMP)
	$(BIN)/python -m bench

chaos: $(STAMP)
	HALSWARM_CHAOS=long $(BIN)/pytest -q -o faulthandler_timeout=0 -m chaos tests/chaos

clean:
	rm -rf $(VENV) $(TOOLS) .halswarm .mypy_cache .ruff_cache
