# Two entry points on a fresh machine: `make run` (the app) and `make test` (the suite).
# Each creates .venv and installs the pinned dependencies it needs, once per requirements change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# This machine keeps the CPU build of torch in /opt/wheels; elsewhere pip finds it on PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(PY) -m pip install --disable-pip-version-check -q $(FIND_LINKS)

.PHONY: run test lint bench model install install-dev clean

$(VENV)/.runtime: requirements/runtime.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements/runtime.txt
	$(PIP) --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.txt
	$(PIP) -r requirements/dev.txt
	# MediaPipe (the tests' reference) pulls in opencv-contrib-python over our headless OpenCV: put
	# back the build users get, so the tests run it (the reference imports either).
	$(PY) -m pip uninstall -y -q opencv-contrib-python
	$(PIP) --force-reinstall --no-deps $$(grep '^opencv-python-headless' requirements/runtime.txt)
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

run: $(VENV)/.runtime
	$(PY) main.py

# The code's shape first (seconds): lint, formatting and the package layers (pyproject.toml).
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/lint-imports --no-cache > /dev/null || $(VENV)/bin/lint-imports --no-cache

test: lint
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(VENV)/.runtime
	$(VENV)/bin/pipnet bench

# The shipped model rebuilt from HEAD (models/README.md, "Training"): the recipe's steps in order,
# each resuming where it stopped, then the ONNX export, its INT8 twin and the detector calibration,
# into build/model/ (never over the shipped files). Hours on a 2-core CPU; `pipnet train` uses CUDA
# when there is one.
RECIPE := $(sort $(wildcard configs/pipnet_mbv2_68/*.toml))
MODEL_OUT := build/model
# The steps' out_dir (configs/pipnet_mbv2_68/*.toml).
RUNS := runs/pipnet_mbv2_68_recipe
DATA := ../shared/data
LICENCE := non-commercial research use only: trained on 300-W (HELEN, AFW) and YouTube Faces, which are licensed for non-commercial research

# Steps 4 and 5's turned faces and crops with no face, made from the training pictures (seeded: the same
# folders each time; MediaPipe's Face Mesh lifts the faces to 3D).
PREPARED := $(HOME)/.cache/pipnet-live/data
TRAIN_PICTURES := $(DATA)/300w_subset/helen/trainset $(DATA)/300w_subset/afw

model: $(VENV)/.dev
	test -f $(PREPARED)/helen_afw_turned/turns.csv || \
		$(VENV)/bin/pipnet prepare-data --data $(TRAIN_PICTURES) --out $(PREPARED)/helen_afw_turned --per-face 2
	test -f $(PREPARED)/helen_afw_profile/turns.csv || \
		$(VENV)/bin/pipnet prepare-data --data $(TRAIN_PICTURES) --out $(PREPARED)/helen_afw_profile --per-face 1 \
		--yaw-range 60 90 --seed 1
	test -f $(PREPARED)/helen_afw_negatives/negatives.csv || \
		$(VENV)/bin/pipnet prepare-data --negatives --data $(TRAIN_PICTURES) --out $(PREPARED)/helen_afw_negatives --per-image 2
	for step in $(RECIPE); do $(VENV)/bin/pipnet train --config $$step --resume || exit 1; done
	mkdir -p $(MODEL_OUT)
	$(VENV)/bin/pipnet export --checkpoint $(RUNS)/5_upright/last.pt --out $(MODEL_OUT)/pipnet_mbv2_68.onnx \
		--name pipnet_mbv2_68 --version 1.2.1 --licence "$(LICENCE)"
	$(VENV)/bin/pipnet quantize --model $(MODEL_OUT)/pipnet_mbv2_68.onnx --config $(lastword $(RECIPE))
	$(VENV)/bin/pipnet calibrate --data $(DATA)/300w_subset/helen/trainset $(DATA)/300w_subset/afw $(DATA)/ytf68/train \
		--out $(MODEL_OUT)/detector_calibration.json

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
