# The two commands a newcomer needs: `make demo` and `make test`. Both start from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit clean bench mutation chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# SERVE=1: then serve conveyor's dashboard over the demo's runs (http://127.0.0.1:8000/) until Ctrl-C.
demo: $(STAMP)
	cd $(CURDIR) && $(BIN)/python -m examples.orders demo $(if $(SERVE),--serve)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The browser tests (tests/browser) drive Debian's chromium with Playwright, which cannot download a browser
# of its own here. Installed when missing and make runs as root; elsewhere those tests skip and say why (in
# CI, where CI=true, a browser test that cannot run fails instead).
chromium:
	@if [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make: installing Debian's chromium for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "make: no chromium and not root: the browser tests will be skipped (apt-get install chromium)"; \
		fi; \
	fi

test: lint typecheck chromium
	CONVEYOR_TEST_POSTGRES_URL="$${CONVEYOR_TEST_POSTGRES_URL:-$$($(BIN)/python tests/find_postgres.py)}" \
		$(BIN)/pytest -n 2 --dist loadfile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# conveyor against Sayiir and DBOS (docs/benchmarks.md). The peers go into .venv-bench only, never into
# conveyor's dependencies; a peer that cannot be installed is named in the table and the rest still runs.
# BENCH_ARGS passes options to benchmarks/run.py (e.g. BENCH_ARGS=--quick, or --no-scale, or
# '--against HEAD~1' to measure the last commit beside this build, cell by cell, and print the ratios).
bench:
	@if [ ! -f .venv-bench/.installed-web ]; then \
		$(PYTHON) -m venv .venv-bench && \
		.venv-bench/bin/pip install --quiet --upgrade pip && \
		.venv-bench/bin/pip install --quiet -e '.[web]' 'psycopg[binary,pool]==3.3.9' rich==15.0.0 \
			py-spy==0.4.3 pyinstrument==5.1.3 httpx2==2.16.2 && \
		touch .venv-bench/.installed-web; \
	fi
	@for pin in sayiir==1.0.0 dbos==3.4.0; do \
		name=$${pin%%==*}; version=$${pin##*==}; \
		[ "$$(.venv-bench/bin/python -c "import importlib.metadata as m; print(m.version('$$name'))" \
			2>/dev/null)" = "$$version" ] && continue; \
		.venv-bench/bin/pip install --quiet "$$pin" > .venv-bench/install-$$name.log 2>&1 \
			|| echo "bench: could not install $$pin (.venv-bench/install-$$name.log); it is left out"; \
	done
	.venv-bench/bin/python benchmarks/run.py $(BENCH_ARGS)

# Mutation testing of the pure core (core/decide.py and core/settle.py against tests/unit/test_decide.py;
# see [tool.mutmut] in pyproject.toml). mutmut goes into .venv-mutation only, never into conveyor's dependencies.
mutation:
	@if [ ! -f .venv-mutation/.installed ]; then \
		$(PYTHON) -m venv .venv-mutation && \
		.venv-mutation/bin/pip install --quiet --upgrade pip && \
		.venv-mutation/bin/pip install --quiet -e '.[dev]' mutmut==3.8.1 && \
		touch .venv-mutation/.installed; \
	fi
	rm -rf mutants
	.venv-mutation/bin/mutmut run --max-children 2
	.venv-mutation/bin/mutmut results
