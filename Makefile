# dsm developer entry points. Everything installs into ./.venv from pinned versions
# (constraints.txt), so a fresh machine with only Python 3.11 resolves the same stack.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dsm-installed
WORKDIR ?= work/demo
SIZE   ?= default
PYTEST_ARGS ?=
# test processes (pytest-xdist), each test file in one of them (its module fixtures built once);
# most tests wait on subprocesses, clusters and servers, so two share two cores well. 0: in this process
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.PHONY: setup demo test test-fast lint bench notebooks lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	# stackstac (a test loads the STAC catalog with it) declares pandas<3 although it runs on pandas 3,
	# so pip cannot resolve it in the test extra: installed pinned, without dependencies (all present)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt stackstac
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install dsm with pinned dependencies

demo: setup  ## build the embedded twin region under $(WORKDIR) and print its summary
	$(BIN)/dsm demo --workdir $(WORKDIR) --size $(SIZE)

test: setup  ## lint and type-check dsm/, then run the test suite
	$(BIN)/ruff check dsm
	$(BIN)/mypy dsm
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup  ## the tests not marked slow (about 2 minutes): for the edit-test loop, not instead of make test
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

lint: setup  ## ruff and mypy on dsm/ (configured in pyproject.toml); part of `make test`
	$(BIN)/ruff check dsm
	$(BIN)/mypy dsm

bench: setup  ## run the benchmarks (figures printed as ratios; about 35 minutes on 2 cores)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python bench/cube_io.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/daily_maps.py
	$(BIN)/python bench/inplace_reads.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/station_scores.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/compiled.py
	$(BIN)/python bench/object_store.py
	$(BIN)/python bench/worker_environ.py

notebooks: setup  ## open the notebooks (jupytext .py files) in JupyterLab
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[notebooks]"
	$(BIN)/jupyter lab notebooks/

lock:  ## re-pin constraints.txt from the current .venv (after changing dependencies)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^dsm' > constraints.txt

clean:
	rm -rf $(VENV) work .pytest_cache .hypothesis
