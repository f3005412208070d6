# Everything runs from a project-local virtualenv (.venv) that the first target builds.
# `make test` and `make serve` are the two commands a newcomer needs (see README).

VENV      ?= .venv
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

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
test: $(INSTALLED)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; failing on purpose" >&2; exit 1; fi; \
	exit $$rc

# The API on 127.0.0.1:8081 over ./lobstore.db. No vault by default: sync writes and pushes
# commits, so it starts only when asked (LOBSTORE_VAULT=path, or SERVE_ARGS="--vault path").
serve: $(INSTALLED)
	$(VENV)/bin/lobstore serve $(SERVE_ARGS)

bench: $(INSTALLED)
	$(PY) bench/bench_store.py

clean:
	rm -rf $(VENV) .pytest_cache .tox build *.egg-info
