# Two commands for a new user: `make demo` and `make test` (and `make docs` for the site).
# Each creates .venv (once) with the pinned stack, installs the package in it, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: demo test test-slow bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/openmm-closure demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# the documentation site, strictly: failing docstring examples, CLI help without text or
# defaults, any Sphinx warning (a broken link or reference, a page left out, a docstring
# that does not parse) or a page loading something from another site fail it
$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/_build/html
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_doctests.py tests/test_cli_help.py
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	$(BIN)/python docs/check_site.py docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

bench: $(STAMP)
	$(BIN)/python benchmarks/md_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
