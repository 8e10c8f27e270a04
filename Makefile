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

.PHONY: lab test test-quick lint bench bench-convergence gpu-check clean-venv notebooks sync-notebooks release grade \
	student-release

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
	$(BIN)/ruff check course_utils data_scripts tests benchmarks notebook_src

# `make bench` runs every benchmarks/bench_*.py but bench_convergence.py (hours on a CPU: see
# `make bench-convergence`, ARGS="--models yolo unet --k 4" for what a CPU affords, "--tiny" for a smoke run).
BENCHES := $(filter-out benchmarks/bench_convergence.py,$(sort $(wildcard benchmarks/bench_*.py)))

bench: $(STAMP)
	@for b in $(BENCHES); do echo "== $$b"; $(RUN) $(BIN)/python $$b || exit 1; done

bench-convergence: $(STAMP)
	$(RUN) $(BIN)/python benchmarks/bench_convergence.py $(ARGS)

# Full mode measured on a CUDA machine, offline, in at most about 8 minutes: the device paths of course_utils
# and each lab's full-mode training loops; writes results/gpu_check/gpu_check.{json,md}
# (ARGS="--steps 50 --out DIR", "--tiny" for a test of the code on any machine).
gpu-check: $(STAMP)
	$(RUN) $(BIN)/python benchmarks/gpu_check.py $(ARGS)

# nbgrader (docs/instructor.md): `make release` regenerates labs/ from solutions/ (LABS="01_localisation ..."
# for some only); `make grade LAB=01_localisation [SUBMISSIONS=dir] [ZIP="canvas.zip ..."]` collects,
# autogrades, writes feedback/ and grades/<lab>.csv. COURSE_ROOT is where submitted/ and gradebook.db live.
COURSE_ROOT ?= .
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
UNSAFE ?=
DEST ?=
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

# Every submission runs in a bubblewrap sandbox (docs/instructor.md), JOBS at a time; without
# /usr/bin/bwrap grading refuses to run unless UNSAFE=1.
grade: $(STAMP)
	@test -n "$(LAB)" || { echo "usage: make grade LAB=01_localisation [SUBMISSIONS=dir] [ZIP=file.zip] [JOBS=n] [UNSAFE=1]"; exit 2; }
	$(INSTRUCTOR) grade $(LAB) $(if $(SUBMISSIONS),--submissions $(SUBMISSIONS)) $(if $(ZIP),--zip $(ZIP)) \
		--jobs $(JOBS) $(if $(UNSAFE),--unsafe)

# The tree students get (docs/student.md): labs/, course_utils, data_scripts, docs/student.md and the
# install files; no solutions/, notebook_src/, tests/ or hidden tests. Keep this repository private.
student-release: $(STAMP)
	@test -n "$(DEST)" || { echo "usage: make student-release DEST=../course-student"; exit 2; }
	$(INSTRUCTOR) student-release $(DEST)

clean-venv:
	rm -rf $(VENV) .venv-notebooks

# Real datasets for full mode: make data NAME=oxford_pets  (ARGS="--root DIR --images 200" ...).
# Without NAME it lists the datasets with their sizes and licences.
.PHONY: data
data: $(STAMP)
	@if [ -z "$(NAME)" ]; then $(BIN)/python -m data_scripts.download --help; exit 2; fi
	$(RUN) $(BIN)/python -m data_scripts.download $(NAME) $(ARGS)
