# Specks: `make run` installs and serves; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 6060
MODEL  ?=

.PHONY: install run test dev lint bench clean

install: $(VENV)/.specks-installed

# The install recipe lives in scripts/install.sh, shared with the Dockerfile's build stage.
$(VENV)/.specks-installed: pyproject.toml scripts/install.sh
	PYTHON=$(PYTHON) sh scripts/install.sh $(VENV) --editable
	touch $@

run: install
	$(BIN)/specks serve --host $(HOST) --port $(PORT) $(if $(MODEL),--model $(MODEL))

dev: $(VENV)/.specks-dev

$(VENV)/.specks-dev: $(VENV)/.specks-installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
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
