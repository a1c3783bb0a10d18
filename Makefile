# vae-overlay: `make reproduce` runs the notebooks; `make test` runs every test. Both set up .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))
# Cheap at the paper's settings: nbval re-runs them and compares the checked outputs.
# 05 and 06 train for minutes at their defaults (05: two 3,000-step models; 06: 2 seeds x 2 VAEs and 7 classifiers)
# and 05b and 07 read the study tables (07 also its models): tests/test_notebook05.py, 05b, 06 and 07 run them with
# smaller parameters and tiny studies.
NBVAL_NOTEBOOKS := $(filter-out notebooks/05% notebooks/06% notebooks/07%,$(NOTEBOOKS))
# Any notebook parameter on the command line makes a run of its own under runs/<name>/ (make reproduce
# DATASET=data/mine IMAGE_SIZE=128), as does RUN_CONFIG=runs/<name>/run.yaml; without one, the default run
# re-executes the committed notebooks in place and writes results/.
MAKE_OWN := PYTHON STUDY STUDY_ARGS RUN_CONFIG PYTEST_WORKERS
RUN_ARGS = $(foreach v,$(filter-out $(MAKE_OWN),$(.VARIABLES)),$(if $(filter command line,$(origin $(v))),'$(v)=$($(v))'))
# make test runs nbval on copies of the notebooks here (their results/ and figures land beside them, ignored)
NBVAL_DIR := test-artifacts/nbval

.PHONY: setup reproduce test lab study clean-artifacts

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# Executes the notebooks top to bottom with papermill (vae_overlay.reproduce; which run, which notebooks and where:
# vae_overlay.config).
reproduce: $(STAMP)
	$(BIN)/python -m vae_overlay.reproduce $(if $(RUN_CONFIG),--config "$(RUN_CONFIG)") $(RUN_ARGS)

# Notebooks first (nbval, in order 01 -> 04, on copies whose ../artifacts is this checkout's): they leave the
# trained model that the browser test uses. Then the unit and notebook tests on both cores (pytest-xdist, one test
# file per worker at a time, so a file's module fixtures are built once), then the browser tests alone (they time
# key presses, which a busy second core would distort); last, a check that the suite changed no tracked file.
# PYTEST_WORKERS=1 runs the middle part in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	@git status --porcelain --untracked-files=all > $(VENV)/status-before.txt 2>/dev/null || true
	rm -rf $(NBVAL_DIR) && mkdir -p $(NBVAL_DIR)/notebooks artifacts
	cp $(NBVAL_NOTEBOOKS) $(NBVAL_DIR)/notebooks/ && ln -s ../../artifacts $(NBVAL_DIR)/artifacts
	MPLBACKEND=Agg $(BIN)/python -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg \
	  $(addprefix $(NBVAL_DIR)/,$(NBVAL_NOTEBOOKS))
	MPLBACKEND=Agg $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not browser" tests
	MPLBACKEND=Agg $(BIN)/python -m pytest -q -m browser tests
	@git status --porcelain --untracked-files=all > $(VENV)/status-after.txt 2>/dev/null || true
	@diff $(VENV)/status-before.txt $(VENV)/status-after.txt \
	  || (echo "make test changed files in the repository (above): tests must write to temporary or ignored paths"; exit 1)

# A study: a grid of trainings on Dask (LocalCluster by default; DASK_SCHEDULER_ADDRESS=host:port scales out).
# Resumable: re-running it computes only the runs results/studies/<name>.csv lacks. Background: nohup make study &
# Several, one after another: make study STUDY="section4 section4-dims classifier"
STUDY ?= section3
STUDY_ARGS ?=
study: $(STAMP)
	$(BIN)/python -m vae_overlay.study $(STUDY) $(STUDY_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean-artifacts:
	rm -rf artifacts
