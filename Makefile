# Every target sets up what it needs itself: a fresh machine runs `make run` or `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= ./data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck imports bench bench-browser bench-recording bench-janus bench-capacity bench-memory bench-websockets bench-failover soak clean deps-system deps-build venv

# The native data plane (fortrolig/media/native/) is compiled by the editable install: it needs
# a C compiler and the headers of the Python that makes the venv (installed when missing).
$(STAMP): pyproject.toml $(wildcard fortrolig/media/native/*.c fortrolig/media/native/*.h) | deps-build
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/fortrolig serve --data-dir $(DATA_DIR)

lint: $(STAMP)
	$(BIN)/ruff check fortrolig tests bench
	$(BIN)/ruff format --check fortrolig tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

deps-build:
	@missing=""; \
	command -v cc >/dev/null 2>&1 || missing="$$missing gcc libc6-dev"; \
	[ -f "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Debian packages the test suite needs (real PostgreSQL for the stores, real Redis for
# coordination, a Unicode font for PDF exports, Chromium and Firefox ESR for the browser tests,
# Podman with runc and mmdebstrap to build and run the container image, coturn for the TURN
# tests; rootless Podman also needs uidmap and slirp4netns). Installed only when missing; needs
# root (or sudo). Debian may start a redis-server service on install; the tests start their own.
# Debian's coturn package enables a turnserver service on systemd machines: it is stopped and
# disabled right after the install (the tests start their own turnserver on free loopback ports,
# and a TURN server nobody configured must not run on the machine).
APT_PACKAGES := postgresql fonts-dejavu-core chromium firefox-esr redis-server podman runc mmdebstrap coturn
deps-system:
	@missing=""; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/firefox-esr ] || missing="$$missing firefox-esr"; \
	[ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	for tool in podman runc mmdebstrap; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -x /usr/bin/turnserver ] || missing="$$missing coturn"; \
	[ -x /usr/sbin/ethtool ] || missing="$$missing ethtool"; \
	if [ "$$(id -u)" != 0 ]; then \
	  command -v newuidmap >/dev/null 2>&1 || missing="$$missing uidmap"; \
	  command -v slirp4netns >/dev/null 2>&1 || missing="$$missing slirp4netns"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	  case "$$missing" in *coturn*) \
	    if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now coturn.service || true; fi; \
	  esac; \
	fi

test: deps-system lint typecheck imports
	$(BIN)/pytest -q -p no:cacheprovider --durations=20 -n 2 --dist loadgroup -m "not alone"
	$(BIN)/pytest -q -p no:cacheprovider --durations=10 -m alone

bench: $(STAMP) deps-system
	$(BIN)/python -m bench.sfu_bench --out docs/bench-sfu.json
	$(BIN)/python -m bench.journal_bench --out docs/bench-journal.json
	$(BIN)/python -m bench.browser_e2ee --out docs/bench-browser-e2ee.json

# Chromium's CPU for both ends of a 1:1 consultation, with and without end-to-end encrypted media.
bench-browser: $(STAMP) deps-system
	$(BIN)/python -m bench.browser_e2ee --out docs/bench-browser-e2ee.json

# The recorder's cost: the SFU with and without a Recorder attached (server CPU, latency of the
# other legs), then the native path's per-packet cost with and without a Python tap.
bench-recording: $(STAMP)
	$(BIN)/python -m bench.sfu_bench --servers fortrolig,fortrolig-recorded --ks 1,2 --no-direct --out docs/bench-recording.json
	$(BIN)/python -m bench.tap_bench --out docs/bench-tap.json

# Side by side with Janus (Debian's janus package, installed when missing; needs root for the
# network namespace the benchmark creates and deletes).
bench-janus: $(STAMP)
	@[ -x /usr/bin/janus ] || (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq janus)
	$(BIN)/python -m bench.janus_bench --out docs/bench-janus.json

# Consultations per core: `fortrolig serve --media-workers 1` pinned to core 1, fortrolig-load on core 0.
bench-capacity: $(STAMP)
	$(BIN)/python -m bench.capacity --out docs/bench-capacity.json

# Resident memory (Rss/Pss) of `fortrolig serve --media-workers 1` holding 0, 10, 25, 50 1:1
# consultations (fortrolig-load --engine native), 3 repeats; Janus beside it the same way (needs
# root for bench.janus_bench's network namespace; Debian's janus installed when missing).
bench-memory: $(STAMP)
	@[ -x /usr/bin/janus ] || (DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq janus)
	$(BIN)/python -m bench.memory --janus --out docs/bench-memory.json

# One node holding 10,000 idle signaling WebSockets (clients in waiting rooms) while new
# connections' hello -> welcome is timed; 3 repeats of about 3 minutes.
bench-websockets: $(STAMP)
	$(BIN)/python -m bench.websockets --out docs/bench-websockets.json

# Join latency and media-back time after the owner node's SIGKILL, over 20 kills, on three nodes
# sharing a real Redis and PostgreSQL (installed by deps-system).
bench-failover: $(STAMP) deps-system
	$(BIN)/python -m bench.failover --out docs/bench-failover.json

# Synthetic consultations (joins, waiting room, admit, media, chat, reconnects, journal notes,
# leaves) on one `fortrolig serve` for SOAK_DURATION seconds; the node's memory, fds, threads and
# asyncio tasks sampled every SOAK_INTERVAL s must grow less than 10 % after the warm-up (a
# benchmark, not a test: exits 1 on FAIL).
SOAK_DURATION ?= 3600
SOAK_INTERVAL ?= 30
SOAK_CONCURRENCY ?= 4
SOAK_OUT ?= docs/bench-soak.json
soak: $(STAMP)
	$(BIN)/python -m bench.soak --duration $(SOAK_DURATION) --interval $(SOAK_INTERVAL) \
	  --concurrency $(SOAK_CONCURRENCY) --out $(SOAK_OUT)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
