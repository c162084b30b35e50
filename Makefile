# Two entry points, each self-installing into a local .venv:
#   make demo   -> stream the shipped PPG heart-rate network over a simulated recording
#   make test   -> the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,onnx,ray,gating]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/thinkonce demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
