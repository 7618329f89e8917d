# Two entry points (see README): `make run` and `make test`. Everything else is
# the setup they share: venv, CPU torch pinned first, the package, the models,
# the index. Each step is skipped when already done.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run chat test setup install models index eval load latency clean-index

run: setup
	$(BIN)/rag serve

chat: setup
	$(BIN)/rag chat

test: setup
	bash scripts/install-browser.sh
	$(BIN)/python -m pytest -ra

setup: install models index

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[test,llm]'
	rm -f $(VENV)/.installed-*
	touch $@

models: install
	$(BIN)/rag models prepare

index: models
	$(BIN)/rag index

eval: setup
	$(BIN)/rag eval  # every set of evals/sets.toml, each over its own corpus index

load: setup
	$(BIN)/python bench/load.py --requests 200 --concurrency 8 --mode extractive

latency: setup
	$(BIN)/python bench/answer_latency.py

clean-index:
	rm -rf index/build-* index/CURRENT
