# Two commands set everything up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# Re-install when the project's metadata changes.
STAMP      := $(VENV)/.installed-runtime
DEV_STAMP  := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-all lint format bench clean venv dev docs

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev,onnx,serve,openvino,int8]"
	touch $(STAMP) $@

venv: $(STAMP)
dev: $(DEV_STAMP)

## make demo: create .venv, install atrous, train and compare four models on built-in data, write the report.
demo: $(STAMP)
	$(BIN)/atrous demo --out runs/demo

## make test: create .venv with the dev extras and run the test suite (slow tests excluded).
## The tests that load OpenVINO run in a process of their own (see the marker in pyproject.toml).
test: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not slow and not openvino" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m "openvino and not slow" $(PYTEST_ARGS)

## make test-slow: only the tests marked slow (none at present; exit 5 = none collected is fine here).
test-slow: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-all: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not openvino" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m "openvino" $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check atrous tests benchmarks
	$(BIN)/ruff format --check atrous tests benchmarks

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix atrous tests benchmarks
	$(BIN)/ruff format atrous tests benchmarks

# The documentation site (mkdocs-material + mkdocstrings; the tutorial's code runs while it
# builds). --strict: a broken link, a missing reference or a failing example fails it.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): pyproject.toml | $(DEV_STAMP)
	$(PY) -m pip install --quiet -e ".[dev,onnx,serve,openvino,int8,docs]"
	touch $@

## make docs: build the site into site/ (open site/index.html).
docs: $(DOCS_STAMP)
	@# One torch thread: the pages' examples are small, and OpenMP threads that spin
	@# while other work shares the CPU made the build minutes instead of seconds.
	OMP_NUM_THREADS=1 MPLBACKEND=Agg NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@# The built site as a reader meets it: no raw Sphinx roles, every model, flag and
	@# config key, formulas rendered, the benchmarks page (tests/docs/test_site.py).
	ATROUS_SITE=site $(BIN)/python -m pytest -q -p no:cacheprovider tests/docs/test_site.py

bench: $(DEV_STAMP)
	$(BIN)/atrous bench

clean:
	rm -rf $(VENV) runs site .pytest_cache .ruff_cache .hypothesis

# The ray extra is heavy (ray, pyarrow, pandas), so `make test` does not install it and
# its tests skip there with the reason; this target installs it and runs them all.
RAY_STAMP := $(VENV)/.installed-ray
.PHONY: test-ray

$(RAY_STAMP): pyproject.toml | $(DEV_STAMP)
	$(PY) -m pip install --quiet -e ".[dev,onnx,serve,ray]"
	touch $@

## make test-ray: Ray Data prediction, Ray Serve replicas, two-node torchrun (a few minutes).
test-ray: $(RAY_STAMP)
	$(BIN)/python -m pytest tests/scale $(PYTEST_ARGS)
