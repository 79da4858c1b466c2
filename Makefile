# Every target sets the machine up first (scripts/setup.sh is idempotent and fast when done).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: install test lint demo bench clean

install:
	@scripts/setup.sh

test: install
	$(VENV)/pytest -q $(PYTEST_ARGS)

lint: install
	$(VENV)/ruff check mcosup webhooks tests bench
	$(VENV)/ruff format --check mcosup webhooks tests bench
	$(VENV)/mypy
	$(VENV)/lint-imports

demo: install
	$(VENV)/mcosup demo

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/python $$b || exit 1; done

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
