# `make test` and `make demo` set up a fresh machine by themselves: a virtual
# environment in .venv with the versions in constraints.txt (tested together).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FASHION := /usr/share/datasets/fashion-mnist
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# MkDocs and a plugin print banners about MkDocs 2 at every build; these switch them off.
DOCS_ENV := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true

.PHONY: test demo docs lint bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "subsetsearch needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) --version 2>&1). Run: make PYTHON=python3.11 ..."; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV) || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

# Fashion-MNIST, the built-in real dataset (Debian's package; no download at run time).
$(FASHION):
	@$(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q dataset-fashion-mnist; } || \
		{ echo "could not install Debian's dataset-fashion-mnist; install it (sudo apt-get install dataset-fashion-mnist) and rerun"; exit 1; }

# Headless Chromium: the report test opens report.html in it (Debian's package).
$(CHROMIUM):
	@$(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium; } || \
		{ echo "could not install Debian's chromium (the report test needs it); install it (sudo apt-get install chromium) and rerun"; exit 1; }

# The tests include tests/test_package.py: it builds the wheel and the sdist, installs the wheel
# without extras in a throwaway venv, and runs `subsetsearch score` there (no torch importable).
# The 15 slowest tests are listed at the end: the suite must stay under 15 minutes on CI.
test: $(STAMP) $(FASHION) $(CHROMIUM)
	$(BIN)/ruff check .
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --site-dir site
	$(BIN)/python -m pytest -q --durations=15

# The documentation site, into site/ (open site/index.html); broken links fail the build.
docs: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --site-dir site

demo: $(STAMP) $(FASHION)
	$(BIN)/subsetsearch run configs/demo.yaml --run-dir runs/demo
	$(BIN)/subsetsearch report runs/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/acquisition_scaling.py

clean:
	rm -rf $(VENV) runs site build dist .pytest_cache .hypothesis .ruff_cache
