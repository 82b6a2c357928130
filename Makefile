# Two commands do all the setup: `make demo` (run the daily job on the embedded default)
# and `make test` (the whole suite). Both create the virtual environment when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per requirements set: production's (make demo) and the tests' on top (make test).
BASE_STAMP := $(VENV)/.installed-base-$(shell cat requirements/base.txt | cksum | cut -d' ' -f1)
DEV_STAMP := $(VENV)/.installed-dev-$(shell cat requirements/base.txt requirements/dev.txt | cksum | cut -d' ' -f1)
TEST_BROKER ?= redis://127.0.0.1:6379/15

DEMO_CUSTOMERS ?= 2000
DEMO_DAYS ?= 365
DEMO_SEED ?= 7

.PHONY: setup setup-dev migrate demo serve test test-fast test-pg worker beat clean bench-import bench-bert bench-scoring bench-slack bench-views simulate

$(BASE_STAMP): requirements/base.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/base.txt
	rm -f $(VENV)/.installed-base-* && touch $@

$(DEV_STAMP): $(BASE_STAMP) requirements/dev.txt
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	rm -f $(VENV)/.installed-dev-* && touch $@

setup: $(BASE_STAMP)
setup-dev: $(DEV_STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py generate_demo_shop --customers $(DEMO_CUSTOMERS) --days $(DEMO_DAYS) --seed $(DEMO_SEED) --if-empty
	$(BIN)/python manage.py run_daily
	@echo
	@echo "Open the CRM: make serve, then http://127.0.0.1:8000/ and sign in as ana / churn-demo (account manager),"
	@echo "maria / churn-demo (manager, sees every book) or admin / churn-demo (also opens /admin/)."

serve: migrate
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# The whole suite, in parallel: test modules spread over one process per core (the tests that use
# the real Celery worker share one module, so one process). Uses DATABASE_URL when set (CI sets PostgreSQL), else SQLite; the
# worker tests need Redis at $(TEST_BROKER) and PostgreSQL, and say so when absent.
PYTEST := CELERY_BROKER_URL="$${CELERY_BROKER_URL:-$(TEST_BROKER)}" $(BIN)/python -m pytest -n auto --dist loadfile
test: setup-dev
	$(PYTEST) $(PYTEST_ARGS)

# The edit loop: everything but the tests marked slow (real weights, worker processes, model
# fits) and the browser tests. `make test` still runs them all.
test-fast: setup-dev
	$(PYTEST) -m "not slow and not browser" $(PYTEST_ARGS)

# The suite on the local PostgreSQL, as CI runs it.
test-pg:
	DATABASE_URL="$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/churn}" $(MAKE) test

worker: setup
	$(BIN)/celery -A config worker -Q default,score,train,slack -l info

beat: setup
	$(BIN)/celery -A config beat -l info

# Benchmarks (figures in docs/); each uses its own database where it needs one.
bench-import: setup-dev
	$(BIN)/python benchmarks/import_transactions.py
bench-bert: setup-dev
	$(BIN)/python benchmarks/bert_finetune.py
bench-scoring: setup-dev
	$(BIN)/python benchmarks/scoring.py
bench-slack: setup-dev
	$(BIN)/python benchmarks/slack_lookup.py
bench-views: setup-dev
	$(BIN)/python benchmarks/views.py

# The closed loop run forward (docs/simulation.md), in its own SQLite file.
simulate: setup
	mkdir -p var
	DATABASE_URL="sqlite:///$(CURDIR)/var/simulate.sqlite3" $(BIN)/python manage.py migrate --noinput
	DATABASE_URL="sqlite:///$(CURDIR)/var/simulate.sqlite3" $(BIN)/python manage.py simulate --days 120 --customers 5000 --seed 1 --replace --json var/simulate.json

clean:
	rm -rf $(VENV) db.sqlite3 var staticfiles
