# rewardlab: `make demo` runs the pipeline end to end, `make test` runs the tests.
# Each target does its own set-up on a fresh machine and skips what is already done.
#
# Overrides:
#   PYTHON=python3.12            interpreter used to create the virtual environment
#   VENV=/path/to/env            use (or create) another environment
#   TORCH='torch==2.5.1+cu124 --index-url https://...'   install another torch build;
#                                a torch already importable in $(VENV) is always kept

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
DEMO_DIR ?= demo_out
DEMO_N ?= 600
DEMO_PAIRS ?= 4
# PPO updates of the demo: training/ppo_demo.yaml's max_steps; another value is passed as a flag
PPO_STEPS ?= 40
# espeak-ng speaks the demo world; redis-server backs the argilla-server the Argilla tests start;
# chromium is the browser the annotation app's tests drive (Playwright, no downloaded browser)
SYSTEM_PACKAGES := espeak-ng redis-server chromium
# command that proves each system package is present, in the same order
SYSTEM_COMMANDS := espeak-ng redis-server chromium

PY := $(VENV)/bin/python
STAMP := $(VENV)/.rewardlab-installed

# The demo recipes in training/ name demo_out's folders, so that each one's header command is
# exactly what `make demo` runs; another DEMO_DIR passes its own folders as flags.
moved = $(if $(filter-out demo_out,$(DEMO_DIR)),$(1))
GRM_FOLDERS := --model-path $(DEMO_DIR)/tiny-grm-init --project $(DEMO_DIR) --output-dir $(DEMO_DIR)/grm-stage1
REFINE_FOLDERS := --model-path $(DEMO_DIR)/grm-stage1/final --project $(DEMO_DIR) --output-dir $(DEMO_DIR)/grm
PPO_FOLDERS := --model-path $(DEMO_DIR)/policy-init --grm $(DEMO_DIR)/grm/final \
	--project $(DEMO_DIR) --output-dir $(DEMO_DIR)/ppo
ROUND2_FOLDERS := --model-path $(DEMO_DIR)/grm/final --project $(DEMO_DIR) \
	--output-dir $(DEMO_DIR)/grm-round2

.PHONY: demo test setup system lint format bench clean-demo

demo: setup
	$(VENV)/bin/rewardlab demo-data --out $(DEMO_DIR) --n $(DEMO_N) --pairs $(DEMO_PAIRS) --force
	$(VENV)/bin/rewardlab stats $(DEMO_DIR) --plot $(DEMO_DIR)/annotation_overview.png
	$(VENV)/bin/rewardlab export $(DEMO_DIR) --format parquet --out $(DEMO_DIR)/exports/judgments.parquet
	$(VENV)/bin/rewardlab export $(DEMO_DIR) --format hf --out $(DEMO_DIR)/exports/judgments_hf
	$(VENV)/bin/rewardlab tiny-grm --project $(DEMO_DIR) --out $(DEMO_DIR)/tiny-grm-init
	# the demo GRM in two stages: last-turn warm-up then full dialogues, then a refining run
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab train-grm --config training/grm_demo.yaml$(call moved, $(GRM_FOLDERS))
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab train-grm --config training/grm_demo_refine.yaml$(call moved, $(REFINE_FOLDERS))
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab calibrate --grm $(DEMO_DIR)/grm/final --project $(DEMO_DIR) \
		--method auto
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab evaluate --grm $(DEMO_DIR)/grm/final --project $(DEMO_DIR) \
		--out $(DEMO_DIR)/report --truth
	@echo "GRM evaluation report: $(DEMO_DIR)/report/report.html (numbers: $(DEMO_DIR)/report/metrics.json)"
	# RL against that same calibrated GRM: a tiny audio policy warm-started on the world's
	# replies, then PPO on rubric and plain prompts in one run; prints the held-out GRM reward
	# and the world's own truth score of the replies, before and after, per prompt kind
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab tiny-policy --project $(DEMO_DIR) \
		--grm $(DEMO_DIR)/grm/final --out $(DEMO_DIR)/policy-init --steps 150
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab ppo --config training/ppo_demo.yaml$(call moved, $(PPO_FOLDERS))$(if \
		$(filter-out 40,$(PPO_STEPS)), --max-steps $(PPO_STEPS))
	# round two: the warm-start and the PPO policy reply to every prompt; the replies become
	# tasks, labelled by the world's rules and judged by its annotators; the judge trains on
	# rounds 1 and 2; one page shows the loop (PPO, and both judges on round 2's held-out pairs)
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab sample --policy $(DEMO_DIR)/policy-init \
		--project $(DEMO_DIR) --out $(DEMO_DIR)/round2/tasks.jsonl --round 2 --batch-size 32
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab sample --policy $(DEMO_DIR)/ppo/final \
		--project $(DEMO_DIR) --out $(DEMO_DIR)/round2/tasks.jsonl --round 2 --batch-size 32
	$(VENV)/bin/rewardlab demo-annotate $(DEMO_DIR) --tasks $(DEMO_DIR)/round2/tasks.jsonl
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab train-grm --config training/grm_demo_round2.yaml$(call moved, $(ROUND2_FOLDERS))
	HF_HUB_OFFLINE=1 $(VENV)/bin/rewardlab loop-report --ppo $(DEMO_DIR)/ppo --project $(DEMO_DIR) \
		--grm $(DEMO_DIR)/grm/final --grm-round2 $(DEMO_DIR)/grm-round2/final --out $(DEMO_DIR)/loop
	@$(VENV)/bin/rewardlab demo-accounts $(DEMO_DIR)

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(PY) benchmarks/bench_submit.py
	$(PY) benchmarks/bench_export.py
	$(PY) benchmarks/bench_grm_scoring.py
	$(PY) benchmarks/bench_ppo.py
	$(PY) benchmarks/bench_annotation_app.py
	$(PY) benchmarks/bench_judgment_import.py
	$(PY) benchmarks/bench_hf_import.py
	$(PY) benchmarks/bench_reward_service.py

setup: system $(STAMP)

# System packages: installed with apt when missing and we are root; otherwise say what to do.
system:
	@missing=""; \
	for cmd in $(SYSTEM_COMMANDS); do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing system packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
		else \
			echo "missing system packages:$$missing -- install them (e.g. sudo apt-get install $(SYSTEM_PACKAGES))" >&2; exit 1; \
		fi; \
	fi

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first: an unpinned torch would pull a multi-GB CUDA build on a CPU machine.
$(VENV)/.torch: | $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		$(PY) -m pip install -q $(TORCH); \
	fi
	@touch $@

# the argilla extra too: its tests run the real SDK against a real argilla-server
$(STAMP): pyproject.toml Makefile $(VENV)/.torch
	$(PY) -m pip install -q -e ".[dev,argilla]"
	@touch $@

clean-demo:
	rm -rf $(DEMO_DIR)
