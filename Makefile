# neuronimp: every target sets up its own virtual environment first. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST ?= /usr/share/datasets/fashion-mnist
# Offline development and CI: the MR / SST-2 files beside the checkout, when that folder exists (elsewhere:
# `neuronimp data fetch mr|sst2`). An explicit $NEURONIMP_SENTIMENT_DIR wins.
SENTIMENT_DIR := $(abspath ../shared/data/sentiment)
ifneq ($(wildcard $(SENTIMENT_DIR)/.),)
export NEURONIMP_SENTIMENT_DIR ?= $(SENTIMENT_DIR)
endif
RESULTS ?= results
CKPT := $(RESULTS)/checkpoints

.DEFAULT_GOAL := help
.PHONY: help setup data demo test test-fast test-gpu bench reproduce-tables train-offline kimcnn clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[test,slurm,parquet]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install neuronimp with its test extras (torch from the registry)

data: ## Install Fashion-MNIST from Debian (dataset-fashion-mnist) when missing and possible
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then echo "Fashion-MNIST: $(FMNIST)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	  && echo "Fashion-MNIST installed in $(FMNIST)" || echo "Fashion-MNIST unavailable: its tests will be skipped"; \
	else echo "Fashion-MNIST unavailable (need root and apt-get): its tests will be skipped"; fi

$(CKPT)/digits_cnn.pt: $(STAMP) configs/digits_train.yaml
	$(BIN)/neuronimp train --config configs/digits_train.yaml

demo: $(STAMP) $(CKPT)/digits_cnn.pt ## Train the digits CNN (seconds) and run the ablation-until-flip study on it
	$(BIN)/neuronimp ablate --config configs/digits_ablate.yaml

test: $(STAMP) data ## Run the test suite (CPU; GPU tests are skipped without a GPU)
	$(BIN)/python -m pytest -q -m "not gpu" tests

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/python -m pytest -q -m "not gpu" tests/unit

test-gpu: $(STAMP) ## The GPU tests only: every study's CUDA path against its CPU run (needs a CUDA device)
	$(BIN)/python -m pytest -q -m gpu tests

bench: $(STAMP) ## Run every benchmark script; figures go to results/benchmarks.txt
	bash scripts/bench_all.sh

train-offline: $(STAMP) data ## Train the offline networks (digits, Fashion-MNIST CNN)
	$(BIN)/neuronimp train --config configs/digits_train.yaml
	$(BIN)/neuronimp train --config configs/fashion_cnn_train.yaml

kimcnn: $(STAMP) ## Train the Kim CNN on SST-2 (about 25 min on 2 cores) and run the filter analysis and studies
	bash scripts/train_kimcnn.sh all

reproduce-tables: $(STAMP) data ## Run every offline study config and write results/ tables and figures
	bash scripts/reproduce_tables.sh

clean: ## Remove run folders (keeps checkpoints and the venv)
	rm -rf $(RESULTS)/run* .pytest_cache
