# Two entry points for a fresh machine; each creates the virtualenv on first use. They run the
# mini tier (docs/mini-world.md: models trained on a synthetic world, so the rows differ), two
# runs at a time with one torch thread each: its small ops gain nothing from two threads, and two
# busy threads per run on 2 cores thrash. The tiny tier (random models) is the tests' own.
#   make table2   regenerate Table 2 on the mini tier (local executor, local MLflow store)
#   make table1   regenerate Table 1 on the mini tier (stage 2 -> stage 3 -> DreamBench + FID)
#   make test     lint and type-check (make lint), then run the test suite
#   make install  only create the virtualenv
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two test workers on 2 cores: the tests run one torch thread each, and many wait on
# subprocesses, SLURM or MLflow between bursts of work.
TEST_WORKERS ?= 2
# The tier `make table1`, `table2` and `plan` run: `make table2 TIER=tiny` for the random one.
TIER ?= mini

.PHONY: install table1 table2 lint test plan ui clean

# pip byte-compiles on one core; compile_dir spreads it over all of them (and, like pip, passes
# over files for other Python versions). Shells with PYTHONDONTWRITEBYTECODE never write .pyc files
# later, so every import of an uncompiled torch would parse it again.
$(STAMP): pyproject.toml $(CONSTRAINTS) repro/setup/torchvision_cpu_shim.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c $(CONSTRAINTS) -e '.[test]'
	$(BIN)/python -c 'import compileall, sysconfig; compileall.compile_dir(sysconfig.get_paths()["purelib"], quiet=2, workers=0)'
	$(BIN)/python -m repro.setup.install_shim
	touch $(STAMP)

install: $(STAMP)

table2: $(STAMP)
	$(BIN)/repro run --tier $(TIER) --table table2 --parallel 2

table1: $(STAMP)
	$(BIN)/repro run --tier $(TIER) --table table1 --parallel 2

# What to check is set in pyproject.toml ([tool.ruff], [tool.mypy]); both fail fast, before the
# suite's 20 minutes.
lint: $(STAMP)
	$(BIN)/ruff check repro experiments models tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

plan: $(STAMP)
	$(BIN)/repro plan --tier $(TIER)

ui: $(STAMP)
	$(BIN)/repro ui

clean:
	rm -rf runs mlflow.db mlartifacts .cache/tiny-assets .cache/mini-assets
