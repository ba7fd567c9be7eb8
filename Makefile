# The two commands: `make demo` and `make test`. Both set everything up first
# (virtualenv, install, Kafka jars) and are quick the second time.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
# re-install when the dependencies change
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test setup install lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# Mosquitto (Debian's package) is the MQTT broker of the tests and the demo; it is in
# /usr/sbin, often not on a user's PATH. Installing it needs root (non-interactive).
setup: install
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto)
	$(BIN)/millstream setup

demo: setup
	$(BIN)/millstream demo $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
