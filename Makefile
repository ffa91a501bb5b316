# Two commands on a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install migrate demo lint format check-migrations test-postgres clean worker screenshots

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py seed_demo_orders

## Serve the back-office on http://$(HOST):$(PORT) with the SQLite database and demo data.
run: demo
	@echo "Admin: http://$(HOST):$(PORT)/admin/   API docs: http://$(HOST):$(PORT)/api/docs/"
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## A Celery worker with the beat scheduler in the same process (development only; production runs them apart).
## It needs Redis: REDIS_URL (default redis://127.0.0.1:6379/0; the queue uses the next database number). Start
## `make run` with the same REDIS_URL, or the web process keeps running jobs itself.
worker: migrate
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} $(BIN)/celery -A portfolio_site worker --beat --loglevel=INFO

## The whole suite with coverage (SQLite and local-memory cache unless DATABASE_URL / REDIS_URL are set).
test: install
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=85 -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check-migrations: install
	$(BIN)/python manage.py makemigrations --check --dry-run

## The suite against the local PostgreSQL and Redis.
test-postgres: install
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/portfolio} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-redis://127.0.0.1:6379/14} \
	$(BIN)/pytest -q

## The README's screenshots (docs/screenshots/) of the demo data, through Debian's chromium (apt-get install chromium).
screenshots: install
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .coverage htmlcov
