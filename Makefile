# truesync: `make demo` runs the sandbox flows through Airflow; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin

export TRUESYNC_STATE_DIR ?= $(CURDIR)/state
export AIRFLOW_HOME ?= $(TRUESYNC_STATE_DIR)/airflow
# The sandbox systems; point these connections at real systems in production.
export AIRFLOW_CONN_TRUESYNC_WEBSHOP ?= sqlite:///$(TRUESYNC_STATE_DIR)/sandbox/webshop.db
export AIRFLOW_CONN_TRUESYNC_ERP ?= sqlite:///$(TRUESYNC_STATE_DIR)/sandbox/erp.db
export AIRFLOW_CONN_TRUESYNC_CRM ?= sqlite:///$(TRUESYNC_STATE_DIR)/sandbox/crm.db
export AIRFLOW_CONN_TRUESYNC_STOCKCTL ?= sqlite:///$(TRUESYNC_STATE_DIR)/sandbox/stockctl.db
export AIRFLOW_CONN_TRUESYNC_ACCOUNTING ?= sqlite:///$(TRUESYNC_STATE_DIR)/sandbox/accounting.db
export AIRFLOW_CONN_TRUESYNC_COMPLIANCE ?= sqlite:///$(TRUESYNC_STATE_DIR)/sandbox/compliance.db
export AIRFLOW_CONN_TRUESYNC_POS ?= sqlite:///$(TRUESYNC_STATE_DIR)/sandbox/pos.db
# The POS terminals' drop folder: a file system's connection is its base URL.
export AIRFLOW_CONN_TRUESYNC_POS_EVENTS ?= file://$(TRUESYNC_STATE_DIR)/sandbox/pos
# The sandbox REST APIs as `truesync sandbox serve` starts them (`make demo` serves its own on free ports).
export AIRFLOW_CONN_TRUESYNC_CRM_API ?= http://:sandbox-token@127.0.0.1:8701
export AIRFLOW_CONN_TRUESYNC_PAYMENTS ?= http://:sandbox-token@127.0.0.1:8702

.PHONY: venv browser demo up test test-unit chaos month lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: venv
	$(BIN)/python scripts/demo.py

up: venv
	$(BIN)/python scripts/up.py

# The HTML report's screenshot test drives a headless browser: Debian's chromium. Without it
# (no apt-get, no root) the test is skipped, and fails under CI=true.
browser:
	@command -v chromium >/dev/null || { \
	    SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	} || echo "chromium could not be installed: the report screenshot test will be skipped"

# The three tiers on two workers (pytest-xdist; each file stays on one worker, so a module's shared
# setup is built once): unit and integration together, then real Airflow installations, two at a time.
test: venv browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 --dist loadfile tests/unit tests/integration
	$(BIN)/pytest -n 2 --dist loadfile tests/airflow

# The fast tier for development: nothing outside the process, under a minute.
test-unit: venv
	$(BIN)/ruff check .
	$(BIN)/pytest tests/unit

# The fault suite: 24 seeded kill -9 trials through a real Airflow per database (SQLite; PostgreSQL
# when TRUESYNC_TEST_POSTGRES_URL is set), the fault tests, then a month of daily runs (make month);
# a table of what was lost (nothing).
chaos: venv
	$(BIN)/python scripts/chaos.py

# A month of daily runs through a real Airflow at sandbox scale 10,000: classes against the labels
# every day, staging empty after every run, the store's growth per table, first/median/last run time.
month: venv
	$(BIN)/python scripts/month.py

bench: venv
	$(BIN)/python bench/sync_bench.py

clean:
	rm -rf $(TRUESYNC_STATE_DIR)
