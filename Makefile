# cv-asr: Common Voice -> log-Mel shards -> CTC / attention ASR.
# `make demo` and `make test` work on a fresh machine: every target that needs the
# virtual environment creates it first.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# LANG is also the locale variable of every shell: only a LANG given on make's command
# line (`make shards LANG=de`) picks the Common Voice language; otherwise French.
ifeq ($(origin LANG),command line)
CV_LANG := $(LANG)
else
CV_LANG ?= fr
endif
CV_ROOT ?= data/cv
CV_ARCHIVE ?=
SHARDS  ?= shards/$(CV_LANG)
MODEL   ?= ctc
RUN     ?= runs/$(CV_LANG)-$(MODEL)
JOBS    ?= 0
SPEED   ?=
# Recipes run with a sane locale whatever LANG was set to on the command line.
CLI := env LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUTF8=1 $(BIN)/asr-cli

.PHONY: setup espeak chromium shards train eval demo test test-all bench bench-gpu clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory espeak
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# espeak-ng voices the synthetic demo corpus (Debian/Ubuntu package; root or sudo).
espeak:
	@command -v espeak-ng >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "espeak-ng is missing and cannot be installed without root: install the espeak-ng package" >&2; exit 1; fi; \
	if command -v apt-get >/dev/null; then $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng >/dev/null; \
	elif command -v brew >/dev/null; then brew install espeak-ng; \
	else echo "install espeak-ng with your package manager" >&2; exit 1; fi

# Chromium runs the browser tests of `asr-cli serve` (they skip without it, so setup goes on
# when it cannot be installed).
chromium:
	@command -v chromium >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "chromium is missing and cannot be installed without root: the browser tests will skip" >&2; exit 1; fi; \
	if command -v apt-get >/dev/null; then $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	else echo "install chromium with your package manager for the browser tests" >&2; exit 1; fi

# A Common Voice release: its .tar.gz (CV_ARCHIVE=..., read without extracting it), or extracted
# under $(CV_ROOT)/$(CV_LANG)/ (clips/ and the TSVs).
shards: $(STAMP)
	$(CLI) shards $(if $(CV_ARCHIVE),--cv-archive $(CV_ARCHIVE),--cv-root $(CV_ROOT)) --lang $(CV_LANG) --out $(SHARDS) --jobs $(JOBS) $(if $(SPEED),--speed $(SPEED))

train: $(STAMP)
	$(CLI) train --shards $(SHARDS) --model $(MODEL) --out $(RUN)

eval: $(STAMP)
	$(CLI) eval --checkpoint $(RUN)/best.pt --shards $(SHARDS) --split test

demo: $(STAMP)
	$(CLI) demo --model $(MODEL)

# Chromium only for the browser tests of `asr-cli serve` (they skip without it): not a `make demo` need.
test: $(STAMP)
	-@$(MAKE) --no-print-directory chromium
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	-@$(MAKE) --no-print-directory chromium
	$(BIN)/python -m pytest -q -m ''

# Pipeline throughput (vs the naive librosa path), the feature codecs, then the shard loader (vs decoding MP3s on
# the fly) and the small model's training rate on BENCH_SHARDS (the demo's, if it was built).
BENCH_SHARDS ?= shards/demo-fr
# the demo trained on each codec's shards (docs/RESULTS.md, part 8): bench_codec.py's CER rows
CODEC_RUNS ?= runs/codec-qdelta/demo-ctc-bf16 runs/codec-f16/demo-ctc-bf16
bench: $(STAMP)
	env LANG=C.UTF-8 LC_ALL=C.UTF-8 $(BIN)/python bench/bench_pipeline.py
	env LANG=C.UTF-8 LC_ALL=C.UTF-8 $(BIN)/python bench/bench_codec.py $(if $(filter 2,$(words $(wildcard $(CODEC_RUNS)))),--runs $(CODEC_RUNS))
	@if [ -f $(BENCH_SHARDS)/dataset.json ]; then env LANG=C.UTF-8 LC_ALL=C.UTF-8 $(BIN)/python bench/bench_loader.py --shards $(BENCH_SHARDS); \
	else echo "no $(BENCH_SHARDS)/dataset.json: run \`make demo\` (or pass BENCH_SHARDS=shards/fr) for the loader benchmark"; fi

# Loader-fed training against the same step on a batch kept on the device, per preset and precision
# (on CUDA: small, conformer-small, conformer-base in bf16 and fp32 with the auto batch; on a CPU: small).
bench-gpu: $(STAMP)
	@if [ -f $(BENCH_SHARDS)/dataset.json ]; then env LANG=C.UTF-8 LC_ALL=C.UTF-8 $(BIN)/python bench/bench_gpu.py --shards $(BENCH_SHARDS); \
	else echo "no $(BENCH_SHARDS)/dataset.json: run \`make demo\` (or pass BENCH_SHARDS=shards/fr)" >&2; exit 1; fi

clean-demo:
	rm -rf data/demo shards/demo-fr runs/demo-*
