# Every target sets the machine up first (scripts/setup.sh is idempotent and fast when done); install and
# test also build the real control plane the tests run on (once per machine, cached by version).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: install base test lint demo bench chaos clean

install:
	@scripts/setup.sh --controlplane

base:
	@scripts/setup.sh

test: install
	$(VENV)/pytest -q $(PYTEST_ARGS)

lint: base
	$(VENV)/ruff check mcosup webhooks tests bench
	$(VENV)/ruff format --check mcosup webhooks tests bench
	$(VENV)/mypy
	$(VENV)/lint-imports

demo: base
	$(VENV)/mcosup demo

# Every bench script (helpers, bench/_*.py, are run by the benches that need them, never on their own),
# each printing its details, then one table of every bench's headline figures against its goal. Every
# bench runs even when one fails; the target fails when a bench failed or a goal was missed.
BENCHES = $(filter-out bench/_%,$(wildcard bench/*.py))

bench: base
	@summary=$$(mktemp); failed=""; \
	for b in $(BENCHES); do \
		echo "== $$b"; MCOSUP_BENCH_SUMMARY=$$summary $(VENV)/python $$b || failed="$$failed $$b"; \
	done; \
	$(VENV)/python bench/_summary.py $$summary $(BENCHES); met=$$?; rm -f $$summary; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi; exit $$met

# The long chaos runs (the tests run short versions): BODIES hostile AdmissionReviews against the webhook,
# then the whole story under SEEDS seeded fault schedules (each after the fault-free run of its story). Both
# run; the target fails when either found a problem. A failing seed prints the command that replays it.
BODIES ?= 100000
SEEDS ?= 20
chaos: base
	@failed=""; \
	$(VENV)/python tests/chaos/webhook_chaos.py --bodies $(BODIES) --rotations 20 || failed="$$failed webhook"; \
	$(VENV)/python tests/chaos/story_chaos.py --seeds $(SEEDS) || failed="$$failed story"; \
	if [ -n "$$failed" ]; then echo "chaos failed:$$failed"; exit 1; fi

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
