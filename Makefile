# Two commands do all set-up on a fresh machine:
#   make run    create .venv if missing, install, run the main job on the synthetic data set
#   make test   same install, then the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_ARGS ?=

.PHONY: install docs run test test-fast test-slurm slurm-up bench gpu-check gpu-check-cpu clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install wsss with its test and docs extras

run: install  ## the whole pipeline on the built-in synthetic data set; prints the mIoU after every step
	$(PY) run.py pipeline=wsss experiment=synthetic $(RUN_ARGS)

test: install  ## the whole suite (SLURM tests skip unless slurm/local-cluster.sh is up)
	$(PY) -m pytest

test-fast: install  ## everything but the slow end-to-end runs
	$(PY) -m pytest -m "not slow and not slurm"

test-slurm: install  ## only the tests that submit to the local SLURM cluster
	$(PY) -m pytest -m slurm tests/slurm

slurm-up:  ## start the local one-node SLURM cluster (root; installs slurm-wlm and munge)
	bash slurm/local-cluster.sh up

docs: install  ## build the documentation site into site/; a broken link or reference fails it
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench: install  ## CPU benchmarks, each against its ceiling in the same run; tables into docs/benchmarks.md
	$(PY) bench/run_all.py

GPU_CHECK_ARGS ?=

gpu-check:  ## the GPU check in its own virtualenv (offline: GPU_CHECK_ARGS="--wheels DIR")
	bash bench/gpu_check.sh $(GPU_CHECK_ARGS)

gpu-check-cpu: install  ## the same check in its tiny CPU mode (what the test suite runs)
	$(PY) bench/gpu_check.py --cpu --out gpu_check_out

clean:  ## remove run folders and caches (not the data cache)
	rm -rf runs outputs multirun .pytest_cache site
