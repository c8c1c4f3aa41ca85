# Pool Hub. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install env migrate run test test-unit test-integration lint typecheck check bench demo console-shots coordinator-stub lock revision clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the locked dependencies

env: ## create .env from .env.example if there is none
	@test -f .env || { sed 's/^POOLHUB_ENV=production$$/POOLHUB_ENV=development/' .env.example > .env; echo "make: created .env from .env.example with POOLHUB_ENV=development (example secrets; production refuses them)"; }

migrate: install env ## upgrade the database schema
	$(BIN)/poolhub migrate

run: install env migrate ## install, migrate and serve on the embedded SQLite database at 127.0.0.1:8210
	$(BIN)/poolhub serve

test: install ## run unit and integration tests (PostgreSQL too when POOLHUB_TEST_DATABASE_URL is set)
	$(BIN)/pytest -q

test-unit: install ## run the unit tests only
	$(BIN)/pytest -q tests/unit

test-integration: install ## run the integration tests only
	$(BIN)/pytest -q tests/integration

lint: install ## ruff lint and format check
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations

typecheck: install ## mypy --strict on src
	$(BIN)/mypy

check: lint typecheck ## lint, format check, types and the import-layer contracts
	$(BIN)/lint-imports

demo: install ## a hub, the coordinator stub and a simulated pool for a minute, then the operator's view
	$(BIN)/poolhub demo

console-shots: install ## a demo pool, then Chromium saves a screenshot of each /console page to docs/console/
	$(BIN)/poolhub console-shots --out docs/console

coordinator-stub: install ## run the coordinator billing stub on 127.0.0.1:8011
	$(BIN)/poolhub coordinator-stub --port 8011

lock: ## re-resolve and pin every dependency into requirements.lock
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -e '.[dev]'
	.lockenv/bin/pip freeze --exclude-editable | grep -iv '^poolhub' > requirements.lock
	rm -rf .lockenv

revision: install ## autogenerate a migration: make revision m="what changed" (against DATABASE_URL, PostgreSQL)
	$(BIN)/alembic revision --autogenerate -m "$(m)"

clean: ## remove the virtualenv and local database
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
