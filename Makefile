# vae-overlay: `make reproduce` runs the notebooks; `make test` runs every test. Both set up .venv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))
# Cheap at the paper's settings: nbval re-runs them and compares the checked outputs.
# 05 and 06 take 15-20 min at their defaults: tests/test_notebook05.py and test_notebook06.py run them with smaller parameters.
NBVAL_NOTEBOOKS := $(filter-out notebooks/05% notebooks/06% notebooks/07%,$(NOTEBOOKS))
# Optional: make reproduce DATASET=data/my-images
DATASET ?=
PARAMS := $(if $(DATASET),-p DATASET "$(abspath $(DATASET))",)

.PHONY: setup reproduce test lab study clean-artifacts

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# Executes every notebook top to bottom, in place, with outputs (figures -> results/figures/).
reproduce: $(STAMP)
	@set -e; for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  $(BIN)/papermill --cwd notebooks --progress-bar $(PARAMS) $$nb $$nb; \
	done
	$(BIN)/python -m vae_overlay.report results

# Notebooks first (nbval, in order 01 -> 06): they leave the trained model that the browser test uses.
test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL_NOTEBOOKS)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q tests

# A study: a grid of trainings on Dask (LocalCluster by default; DASK_SCHEDULER_ADDRESS=host:port scales out).
# Resumable: re-running it computes only the runs results/studies/<name>.csv lacks. Background: nohup make study &
STUDY ?= section3
STUDY_ARGS ?=
study: $(STAMP)
	$(BIN)/python -m vae_overlay.study $(STUDY) $(STUDY_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean-artifacts:
	rm -rf artifacts
