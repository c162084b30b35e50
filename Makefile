# Two entry points, each self-installing into a local .venv:
#   make demo   -> stream the shipped PPG heart-rate network over a simulated recording
#   make test   -> the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean soi-data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,onnx,ray,gating,experiments]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/thinkonce demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# Data of the SOI studies (issue 9): system packages (needs root and apt; never part of `make test`),
# then the caches under ~/.cache/thinkonce (synthesised voices, asterisk prompts, game-data ambience).
SOI_APT := flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng sox fortunes \
	asterisk-core-sounds-en-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav
soi-data: $(STAMP)
	apt-get install -y $(SOI_APT)
	mkdir -p $(HOME)/.cache/thinkonce/asc_debs
	cd $(HOME)/.cache/thinkonce/asc_debs && apt-get download 0ad-data megaglest-data wesnoth-1.16-data
	$(BIN)/python experiments/soi_data.py
	$(BIN)/python experiments/soi_asc.py --setup-only
