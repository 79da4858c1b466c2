# Every target sets the machine up first (scripts/setup.sh is idempotent and fast when done); install and
# test also build the real control plane the tests run on (once per machine, cached by version).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: install base test lint demo bench clean

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

# Every bench script; helpers (bench/_*.py) are run by the benches that need them, never on their own.
bench: base
	@for b in bench/[!_]*.py; do echo "== $$b"; $(VENV)/python $$b || exit 1; done

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
