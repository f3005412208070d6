# Everything runs from a project-local virtualenv (.venv) that the first target builds.
# `make test` and `make serve` are the two commands a newcomer needs (see README).

VENV      ?= .venv
VAULT     ?= vault
PYTHON    ?= python3
PY        := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install test serve bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(INSTALLED)

# The suite runs on every core (pytest-xdist); PYTEST_WORKERS=0 runs it in this one process.
# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
PYTEST_WORKERS ?= auto
test: $(INSTALLED)
	@$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; failing on purpose" >&2; exit 1; fi; \
	exit $$rc

# The API on 127.0.0.1:8081 over ./lobstore.db, syncing into ./vault (VAULT=path for another),
# which is made an empty git repository on first use.
serve: $(INSTALLED)
	@test -e $(VAULT)/.git || { git init -q $(VAULT) && echo "make serve: created an empty git vault in $(VAULT)/"; }
	$(VENV)/bin/lobstore serve --vault $(VAULT) $(SERVE_ARGS)

bench: $(INSTALLED)
	$(PY) bench/bench_store.py

clean:
	rm -rf $(VENV) .pytest_cache .tox build *.egg-info
