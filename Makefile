# freshvec — every command a user or CI needs. `make test` and `make demo` set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
CDK := npx --no-install cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(BIN):$(PATH)

.PHONY: setup test lint format demo synth deploy destroy bench soak clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Lambda dependencies (arm64, Python 3.13) are fetched once here so that synth works offline.
.build/lambda-deps/.installed: lambdas/requirements.txt $(VENV)/.installed
	rm -rf .build/lambda-deps
	$(BIN)/python -m pip install -q -r lambdas/requirements.txt --target .build/lambda-deps/python \
	  --platform manylinux2014_aarch64 --implementation cp --python-version 3.13 --only-binary=:all:
	touch $@

setup: $(VENV)/.installed node_modules/.installed .build/lambda-deps/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: setup lint
	$(BIN)/pytest

demo: setup
	$(BIN)/freshvec local demo

synth: setup
	$(CDK) synth --quiet

deploy: setup
	$(CDK) deploy

destroy: setup
	$(CDK) destroy --force

bench: setup
	$(BIN)/python -m bench

soak: setup
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) node_modules cdk.out .build .pytest_cache .ruff_cache
