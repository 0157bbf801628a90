# seq2seq pipeline: data -> spm -> train -> eval. Each stage is a file target, rerun only when its
# inputs (the previous stage's output, or that stage's resolved settings) changed.
#
#   make train                                   # embedded default recipe, offline
#   make train RECIPE=recipes/multi30k-de-en.yaml MIRROR=../shared/corpora/multi30k ARGS="max_steps=200"
#   make translate IN=in.de OUT=out.en RECIPE=...
#   make serve RECIPE=... PORT=8080              # the trained run over HTTP (SERVE_ARGS: more options)
#   make train NPROC=4                           # 4 processes (GPUs) on this machine via torchrun
#   make test

RECIPE ?= recipes/default.yaml
MIRROR ?=
ARGS ?=
IN ?=
OUT ?=
NPROC ?= 1
PYTHON ?= python3

NAME := $(basename $(notdir $(RECIPE)))
WORK := data/$(NAME)
CORPUS := $(WORK)/corpus
RUN := $(WORK)/run
STAMPS := $(WORK)/stamps
VENV := .venv
S2S := $(VENV)/bin/seq2seq
INSTALLED := $(VENV)/.installed

.PHONY: setup data spm train eval translate serve test lint-fix clean FORCE
.DELETE_ON_ERROR:

setup: $(INSTALLED)

# torch first, pinned: that release's CPU wheel is on these machines' disks (an unpinned torch pulls CUDA)
$(INSTALLED): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip uninstall -q -y seq2seq 2>/dev/null || true  # the old distribution name
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@

# One file per stage's settings, rewritten only when they change (make then sees a newer input).
$(STAMPS)/data.yaml $(STAMPS)/spm.yaml $(STAMPS)/train.yaml $(STAMPS)/eval.yaml &: FORCE | $(INSTALLED)
	@$(S2S) config $(RECIPE) $(ARGS) --stamps $(STAMPS)

$(CORPUS)/manifest.json: $(STAMPS)/data.yaml
	$(S2S) download $(RECIPE) $(ARGS) $(if $(MIRROR),--mirror $(MIRROR))

$(RUN)/spm/trained: $(CORPUS)/manifest.json $(STAMPS)/spm.yaml
	$(S2S) spm $(RECIPE) $(ARGS)
	touch $@

# NPROC>1: DistributedDataParallel through torchrun (NCCL on GPUs, gloo on CPU)
TRAIN_CMD := $(if $(filter-out 1,$(NPROC)),$(VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC) -m seq2seq,$(S2S))

$(RUN)/checkpoints/best.pt: $(RUN)/spm/trained $(STAMPS)/train.yaml
	$(TRAIN_CMD) train $(RECIPE) $(ARGS)
	touch $@

$(RUN)/results.json: $(RUN)/checkpoints/best.pt $(STAMPS)/eval.yaml
	$(S2S) evaluate $(RECIPE) $(ARGS) >/dev/null

data: $(CORPUS)/manifest.json
spm: $(RUN)/spm/trained

# train runs the whole pipeline and prints the test scores with their sacreBLEU signatures
train eval: $(RUN)/results.json
	@cat $(RUN)/results.txt

translate: $(RUN)/checkpoints/best.pt
	@test -n "$(IN)" || { echo "usage: make translate IN=input OUT=output [RECIPE=...]" >&2; exit 2; }
	$(S2S) translate $(RUN) -i $(IN) $(if $(OUT),-o $(OUT))

# the recipe's trained run over HTTP on 127.0.0.1 (docs/serving.md); Ctrl-C stops it
PORT ?= 8080
SERVE_ARGS ?=
serve: $(RUN)/checkpoints/best.pt
	$(S2S) serve $(RUN) --port $(PORT) $(SERVE_ARGS)

# the linter first (style, imports, likely bugs), then the suite
test: $(INSTALLED)
	$(VENV)/bin/ruff check seq2seq tests benchmarks
	$(VENV)/bin/ruff format --check seq2seq tests benchmarks
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# rewrite the code into the linter's format and fix what it can
lint-fix: $(INSTALLED)
	$(VENV)/bin/ruff format seq2seq tests benchmarks
	$(VENV)/bin/ruff check --fix seq2seq tests benchmarks

clean:
	rm -rf $(WORK)

FORCE:
