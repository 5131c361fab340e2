# cxr-fishr: `make demo` runs the whole pipeline on the synthetic cohort; `make test` runs the test suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: setup test demo bench lint experiment clean

setup: $(STAMP)

# Reinstall only when pyproject.toml changes: a second `make setup` takes well under a second.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,ray]'
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/cxr-fishr demo --config configs/demo.yaml

experiment: setup
	$(BIN)/cxr-fishr demo --config configs/experiment.yaml

bench: setup
	$(BIN)/cxr-fishr bench all

lint: setup
	$(BIN)/ruff check pipeline tests

clean:
	rm -rf runs reports/demo
