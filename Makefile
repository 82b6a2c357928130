# Two commands do all the setup: `make demo` (run the daily job on the embedded default)
# and `make test` (the whole suite). Both create the virtual environment when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
TEST_BROKER ?= redis://127.0.0.1:6379/15

DEMO_CUSTOMERS ?= 2000
DEMO_DAYS ?= 365
DEMO_SEED ?= 7

.PHONY: setup migrate demo serve test test-pg worker beat bench clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py generate_demo_shop --customers $(DEMO_CUSTOMERS) --days $(DEMO_DAYS) --seed $(DEMO_SEED) --if-empty
	$(BIN)/python manage.py run_daily

serve: migrate
	$(BIN)/python manage.py runserver 127.0.0.1:8000

# The whole suite. Uses DATABASE_URL when set (CI sets PostgreSQL), else SQLite; the
# worker tests need Redis at $(TEST_BROKER) and PostgreSQL, and say so when absent.
test: setup
	CELERY_BROKER_URL="$${CELERY_BROKER_URL:-$(TEST_BROKER)}" $(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite on the local PostgreSQL, as CI runs it.
test-pg:
	DATABASE_URL="$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/churn}" $(MAKE) test

worker: setup
	$(BIN)/celery -A config worker -Q default,score,train,slack -l info

beat: setup
	$(BIN)/celery -A config beat -l info

clean:
	rm -rf $(VENV) db.sqlite3 var staticfiles
