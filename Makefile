# nextbest — every target wraps the `nextbest` command line. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
NB     := $(BIN)/nextbest
N      ?= 20000
SEED   ?= 7
DATA   ?= data/demo
CONFIG ?= training/demo/config.yaml
AS_OF  ?=
SCORE_AS_OF ?= 2026-11-02
MODEL  ?=
ENGINE ?= local
BUDGET ?=

STORE  ?= out/online_store.sqlite
PORT   ?= 3000
HOST   ?= 127.0.0.1

export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := true
export OMP_NUM_THREADS := 1
export OMP_WAIT_POLICY := PASSIVE

.PHONY: help setup lock lint test demo data validate features train evaluate report promote impact loop score materialize serve bento live notebooks browser postgres bench clean

## help: list the targets (the default)
help:
	@awk 'BEGIN {FS = ": "} /^## / {sub(/^## /, ""); split($$0, a, ": "); printf "  \033[36m%-10s\033[0m %s\n", a[1], substr($$0, length(a[1]) + 3)}' $(MAKEFILE_LIST)

$(BIN)/nextbest: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv==0.13.8
	# bytecode compiled once here: with PYTHONDONTWRITEBYTECODE set, every process would compile
	# its imports anew (MLflow, BentoML: seconds per CLI call, test server and worker)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

## setup: create .venv and install nextbest with the pinned versions of requirements.lock
setup: $(BIN)/nextbest

## lock: re-resolve requirements.lock (every extra) and requirements-serve.lock (core + serve, same pins)
lock: setup
	$(BIN)/uv pip compile -q pyproject.toml --all-extras --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile -q pyproject.toml --extra serve --python-version 3.11 \
		-c requirements.lock -o requirements-serve.lock

## lint: ruff (lint + format check), mypy, and the import layers (import-linter, pyproject.toml)
lint: setup
	$(BIN)/ruff check training serving tests bench
	$(BIN)/ruff format --check training serving tests bench
	$(BIN)/mypy training serving
	$(BIN)/lint-imports

## test: lint, then the whole test suite (what .ci/run calls)
test: lint
	$(BIN)/pytest -n 2 -q --durations=15

## data: write the synthetic demo data set to DATA (N customers, SEED) and its ground truth beside it
data: setup
	$(NB) synth --customers $(N) --seed $(SEED) --out $(DATA)

## validate: check DATA and CONFIG against the data contract
validate: setup
	$(NB) validate --data $(DATA) --config $(CONFIG)

## features: point-in-time features of DATA as of AS_OF (default: the day after the last event)
features: setup
	$(NB) features --data $(DATA) --config $(CONFIG) $(if $(AS_OF),--as-of $(AS_OF)) --out out/features.parquet

## train: train every score on DATA + CONFIG, log to MLflow (./mlflow.db), register a bundle version
train: setup
	$(NB) train --data $(DATA) --config $(CONFIG)

## evaluate: judge MODEL (default @champion) on DATA's held-out exposures; ROI report in out/report
evaluate: setup
	$(NB) evaluate --data $(DATA) --out out/report $(if $(MODEL),--model $(MODEL))

## report: the same as evaluate (docs/cli.md names both)
report: evaluate

## promote: move @champion to the latest version (MODEL=N for another) if neither its scores nor its decisions on DATA are worse
promote: setup
	$(NB) promote --data $(DATA) $(if $(MODEL),--model $(MODEL))

## impact: what the logged decisions earned against the control group (DATA's exposures, or LOG=decision log; SINCE=YYYY-MM-DD); page in out/impact
impact: setup
	$(NB) impact --data $(DATA) --config $(CONFIG) --out out/impact $(if $(SINCE),--since $(SINCE)) $(if $(LOG),--decision-log $(LOG))

## loop: the closed learning loop on the simulator (ROUNDS=4, LOOP_N=5000 customers); works in out/loop
loop: setup
	$(NB) loop --rounds $(or $(ROUNDS),4) --customers $(or $(LOOP_N),5000) --out out/loop

## score: batch-score every customer of DATA as of SCORE_AS_OF with @champion into out/score (ENGINE=dask, BUDGET=)
score: setup
	$(NB) score --data $(DATA) --as-of $(SCORE_AS_OF) --out out/score --engine $(ENGINE) $(if $(MODEL),--model $(MODEL)) $(if $(BUDGET),--budget $(BUDGET))

## demo: the whole pipeline on synthetic data, then one live recommendation from the real service
demo: data validate features train promote report score materialize live

## live: start the service on STORE, print one customer's ranked actions from POST /recommend, stop it
live: setup
	$(BIN)/python -m serving.online.live_demo --store $(STORE) --actions out/score/actions.parquet

## materialize: the online feature store of DATA as of SCORE_AS_OF with @champion, for the service (STORE)
materialize: setup
	$(NB) materialize --data $(DATA) --as-of $(SCORE_AS_OF) --out $(STORE) $(if $(MODEL),--model $(MODEL))

## serve: start the BentoML service on @champion (MODEL=N for another) at http://HOST:PORT
serve: setup
	@test -f $(STORE) || $(MAKE) --no-print-directory materialize
	$(NB) serve --host $(HOST) --port $(PORT) --store $(STORE) $(if $(MODEL),--model $(MODEL))

## bento: a Bento that runs on its own: MODEL (default @champion) and STORE baked in (WHEELHOUSE=dir: offline image)
bento: setup
	@test -f $(STORE) || $(MAKE) --no-print-directory materialize
	$(NB) bento --store $(STORE) $(if $(MODEL),--model $(MODEL)) $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE))

## notebooks: run notebooks/*.ipynb on the tests' small world and save them there with their outputs
notebooks: setup
	NEXTBEST_RENDER_NOTEBOOKS=$(CURDIR)/notebooks $(BIN)/pytest -q -n 2 tests/test_notebook_scores.py tests/test_notebook_uplift.py

## browser: install Debian's chromium and chromedriver (the agent-desktop test drives them; root)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

## postgres: install Debian's postgresql (initdb, pg_ctl: the history tests start their own server; root)
postgres:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

## bench: the benchmarks, printed as a table (BENCH_N=100000,1000000 to choose sizes; BENCH_SERVE_ONLY=1; BENCH_UPLIFT_ONLY=1; BENCH_FAULTS_ONLY=1; BENCH_HISTORY_ONLY=1; BENCH_LIFETIME_ONLY=1 (BENCH_LIFETIME_SEEDS=7 for one simulated world instead of 7,3); BENCH_TEXT_ONLY=1; BENCH_TEXT_SCALE_ONLY=1 for text at 1M customers x 10M texts; BENCH_LOOP_ONLY=1; BENCH_DRIFT_ONLY=1; BENCH_PEERS_ONLY=1 for the peer panel's quick mode, =full for its full mode; BENCH_POLICY_ONLY=1 for the contact policy batch, BENCH_POLICY_N=200000 to size it)
bench: setup
	$(BIN)/python bench/run.py $(if $(BENCH_N),--sizes $(BENCH_N)) $(if $(BENCH_SERVE_ONLY),--serve-only) $(if $(BENCH_UPLIFT_ONLY),--uplift-only) $(if $(BENCH_FAULTS_ONLY),--faults-only) $(if $(BENCH_HISTORY_ONLY),--history-only) $(if $(BENCH_LIFETIME_ONLY),--lifetime-only) $(if $(BENCH_LIFETIME_SEEDS),--lifetime-seeds $(BENCH_LIFETIME_SEEDS)) $(if $(BENCH_TEXT_ONLY),--text-only) $(if $(BENCH_TEXT_SCALE_ONLY),--text-scale-only) $(if $(BENCH_LOOP_ONLY),--loop-only) $(if $(BENCH_DRIFT_ONLY),--drift-only) $(if $(BENCH_PEERS_ONLY),--peers-only $(if $(filter full,$(BENCH_PEERS_ONLY)),full,quick)) $(if $(OPEN_SECONDS),--open-seconds $(OPEN_SECONDS)) $(if $(BENCH_POLICY_ONLY),--policy-only) $(if $(BENCH_POLICY_N),--policy-size $(BENCH_POLICY_N))

## clean: remove generated data, outputs and caches (keeps .venv)
clean:
	rm -rf data/demo data/demo_truth out .pytest_cache .mypy_cache .ruff_cache
