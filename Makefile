# The two commands: `make demo` and `make test`. Both set everything up first
# (virtualenv, install, Kafka jars) and are quick the second time.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
# helm for the chart tests: the one on PATH, else built from the Go module proxy once
# and kept in .tools/bin (rm -r .tools to rebuild)
HELM_VERSION ?= v3.22.0
TOOLS  := .tools/bin
HELM   := $(TOOLS)/helm
GO     ?= $(shell command -v go || echo /usr/local/go/bin/go)
# re-install when the dependencies change
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test setup install lint tools image vendor screenshot clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# Mosquitto (Debian's package) is the MQTT broker of the tests and the demo; it is in
# /usr/sbin, often not on a user's PATH. Chromium (Debian's package, /usr/bin/chromium) is
# the browser of the dashboard test, driven by Playwright: no browser is downloaded.
# Installing them needs root (non-interactive).
setup: install
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto)
	@test -x /usr/bin/chromium || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)
	$(BIN)/millstream setup

demo: setup
	$(BIN)/millstream demo $(ARGS)

$(HELM):
	@mkdir -p $(TOOLS)
	@if command -v helm >/dev/null 2>&1; then \
		ln -sf "$$(command -v helm)" $@; \
	elif test -x "$(GO)"; then \
		echo "building helm $(HELM_VERSION) from the Go module proxy into $(TOOLS) (once)"; \
		GOBIN="$(abspath $(TOOLS))" "$(GO)" install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	else \
		echo "helm is not on PATH and Go is missing: install Go (apt-get install golang-go) or helm" >&2; \
		exit 1; \
	fi

tools: $(HELM)

# The container image (Containerfile), built here where no registry is reachable: a Debian
# base root filesystem from mmdebstrap (cached in ~/.cache/millstream/image), then buildah
# (scripts/build_image.py). Quick when nothing changed. Installing the tools needs root.
image:
	@command -v buildah >/dev/null && command -v mmdebstrap >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah mmdebstrap)
	$(PYTHON) scripts/build_image.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint tools image
	$(BIN)/pytest

# uPlot, the dashboard's chart library, from the npm registry into the Python package
# (pinned version and checksum in the script; the copied files are committed)
vendor:
	scripts/vendor_uplot.sh

# the README's screenshot (docs/dashboard.png), from the dashboard's browser test
screenshot: setup
	MILLSTREAM_UPDATE_SCREENSHOT=1 $(BIN)/pytest tests/integration/test_dashboard.py -q \
	  -k live_pipeline

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
