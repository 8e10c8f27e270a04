# Two commands for everyone:   make lab   (JupyterLab on labs/)   and   make test   (the whole suite).
# Both create .venv on first use and reinstall only when requirements.txt or pyproject.toml change.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

# nbgrader shells out to `alembic`, so the venv's bin/ goes first on PATH; one passive OpenMP
# thread pool keeps 2-core machines responsive when something else is running.
RUN := PATH="$(abspath $(BIN)):$$PATH" OMP_WAIT_POLICY=PASSIVE

.PHONY: lab test test-quick lint bench clean-venv notebooks sync-notebooks release grade

CHECK_PYTHON := $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (nbgrader 0.9.6 requires it); found " + sys.version.split()[0] + ". Run: make PYTHON=python3.11 ...")'

$(BIN)/python:
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -e ".[dev]"
	touch $(STAMP)

# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(RUN) $(BIN)/jupyter lab --ServerApp.root_dir=labs $(ROOT_FLAG) $(ARGS)

test: $(STAMP)
	$(RUN) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-quick: $(STAMP)
	$(RUN) $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check course_utils data_scripts tests benchmarks

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(RUN) $(BIN)/python $$b || exit 1; done

# nbgrader (docs/instructor.md): `make release` regenerates labs/ from solutions/ (LABS="01_localisation ..."
# for some only); `make grade LAB=01_localisation [SUBMISSIONS=dir] [ZIP="canvas.zip ..."]` collects,
# autogrades, writes feedback/ and grades/<lab>.csv. COURSE_ROOT is where submitted/ and gradebook.db live.
COURSE_ROOT ?= .
LAB ?=
LABS ?=
SUBMISSIONS ?=
ZIP ?=
INSTRUCTOR := $(RUN) $(BIN)/python -m course_utils.instructor --root $(COURSE_ROOT)

# Lab sources: notebook_src/NN.py (jupytext percent scripts) -> solutions/NN/NN.ipynb (`make notebooks
# [LABS=...]`), then `make release`. `make sync-notebooks LABS=NN` carries an edit made in Jupyter to
# solutions/NN/NN.ipynb back into notebook_src/NN.py. Both need only jupytext and nbformat: they use the
# course venv when it is installed, else a small one with just jupytext (no torch) in .venv-notebooks.
NB_VENV := $(if $(wildcard $(STAMP)),$(VENV),.venv-notebooks)

.venv-notebooks/.installed: requirements.txt
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv .venv-notebooks
	.venv-notebooks/bin/python -m pip install $$(grep -E '^jupytext==' requirements.txt)
	touch $@

notebooks: $(NB_VENV)/.installed
	$(NB_VENV)/bin/python notebook_src/build.py build $(LABS)

sync-notebooks: $(NB_VENV)/.installed
	$(NB_VENV)/bin/python notebook_src/build.py sync $(LABS)

release: $(STAMP)
	$(INSTRUCTOR) release $(LABS)

grade: $(STAMP)
	@test -n "$(LAB)" || { echo "usage: make grade LAB=01_localisation [SUBMISSIONS=dir] [ZIP=file.zip]"; exit 2; }
	$(INSTRUCTOR) grade $(LAB) $(if $(SUBMISSIONS),--submissions $(SUBMISSIONS)) $(if $(ZIP),--zip $(ZIP))

clean-venv:
	rm -rf $(VENV) .venv-notebooks

# Real datasets for full mode: make data NAME=oxford_pets  (ARGS="--root DIR --images 200" ...).
# Without NAME it lists the datasets with their sizes and licences.
.PHONY: data
data: $(STAMP)
	@if [ -z "$(NAME)" ]; then $(BIN)/python -m data_scripts.download --help; exit 2; fi
	$(RUN) $(BIN)/python -m data_scripts.download $(NAME) $(ARGS)
