# Two commands for a fresh clone: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test worker migrate clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py run

worker: migrate
	$(PY) manage.py worker

# The test database is created and migrated by pytest-django; the check makes sure no
# model change is missing its migration.
test: migrate
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest

clean:
	rm -rf $(VENV)
