# seq2seq pipeline: data -> spm -> train -> eval, all through `seq2seq run`, which reruns a stage only
# when its inputs (the previous stage's output, or that stage's resolved settings) changed.
#
#   make train                                   # embedded default recipe, offline
#   make train RECIPE=recipes/multi30k-de-en.yaml MIRROR=../shared/corpora/multi30k ARGS="max_steps=200"
#   make translate IN=in.de OUT=out.en RECIPE=...
#   make serve RECIPE=... PORT=8080              # the trained run over HTTP (SERVE_ARGS: more options)
#   make train NPROC=4                           # 4 processes (GPUs) on this machine via torchrun
#   make bt RECIPE=recipes/multi30k-de-en-bt.yaml MIRROR=../shared/corpora/multi30k   # back-translation
#   make test

RECIPE ?= recipes/default.yaml
MIRROR ?=
ARGS ?=
IN ?=
OUT ?=
NPROC ?= 1
PYTHON ?= python3

VENV := .venv
S2S := $(VENV)/bin/seq2seq
INSTALLED := $(VENV)/.installed
# the recipe as one shell word (a name with spaces or quotes stays one argument)
Q = '$(subst ','\'',$(1))'
R := $(call Q,$(RECIPE))
RUN_OPTS := $(if $(MIRROR),--mirror $(call Q,$(MIRROR))) $(if $(filter-out 1,$(NPROC)),--nproc $(NPROC))

# Every pipeline target is phony: `seq2seq run` decides which stages to redo (from the settings each
# stage last succeeded with) and make owns no file of a run, so it never deletes one (no
# .DELETE_ON_ERROR, no file targets: an interrupted `make train` keeps best.pt and last.pt).
.PHONY: setup data spm train eval translate serve bt test lint-fix clean

setup: $(INSTALLED)

# torch first, pinned: that release's CPU wheel is on these machines' disks (an unpinned torch pulls CUDA)
$(INSTALLED): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q torch==2.13.0
	$(VENV)/bin/python -m pip uninstall -q -y seq2seq 2>/dev/null || true  # the old distribution name
	# setuptools' 'Editable installation' BuildBackendWarning is advice for package authors, not a failure
	PYTHONWARNINGS='ignore:Editable installation' $(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@

data spm: | $(INSTALLED)
	$(S2S) run $(R) $(ARGS) $(RUN_OPTS) --until $@

# train runs the whole pipeline and prints the test scores with their sacreBLEU signatures
train eval: | $(INSTALLED)
	$(S2S) run $(R) $(ARGS) $(RUN_OPTS)

# IN first: a usage error costs nothing; ARGS reach translate (decode keys such as n_best=2, run_dir=)
translate: | $(INSTALLED)
	@test -n "$(IN)" || { echo "usage: make translate IN=input [OUT=output] [RECIPE=...] [ARGS=...]" >&2; exit 2; }
	$(S2S) run $(R) $(ARGS) $(RUN_OPTS) --until train
	run_dir="$$($(S2S) config $(R) $(ARGS) --run-dir)" && \
	$(S2S) translate "$$run_dir" $(ARGS) -i $(call Q,$(IN)) $(if $(OUT),-o $(call Q,$(OUT)))

# the recipe's trained run over HTTP on 127.0.0.1 (docs/serving.md); Ctrl-C stops it
PORT ?= 8080
SERVE_ARGS ?=
serve: | $(INSTALLED)
	$(S2S) run $(R) $(ARGS) $(RUN_OPTS) --until train
	run_dir="$$($(S2S) config $(R) $(ARGS) --run-dir)" && \
	$(S2S) serve "$$run_dir" --port $(PORT) $(SERVE_ARGS)

# back-translation (docs/data.md#back-translation): train the reverse run, translate the monolingual
# target text with it into the BT_SOURCE corpus of RECIPE (nothing when up to date), train RECIPE.
# The defaults are those of recipes/multi30k-de-en-bt.yaml: the English of train pairs 14501-29000
BT_REVERSE ?= recipes/multi30k-en-de-bt-reverse.yaml
BT_SOURCE ?= bt
MULTI30K_URL := https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw
BT_INPUT ?= $(if $(MIRROR),$(MIRROR)/train.en.gz,$(MULTI30K_URL)/train.en.gz)
BT_ARGS ?= --skip 14500
bt: | $(INSTALLED)
	$(S2S) run $(call Q,$(BT_REVERSE)) $(RUN_OPTS) --until train
	reverse="$$($(S2S) config $(call Q,$(BT_REVERSE)) --run-dir)" && \
	$(S2S) back-translate $(R) $(ARGS) --source $(call Q,$(BT_SOURCE)) --model "$$reverse" --input $(call Q,$(BT_INPUT)) $(BT_ARGS)
	$(S2S) run $(R) $(ARGS) $(RUN_OPTS)

# the linter first (style, imports, likely bugs), then the suite
test: $(INSTALLED)
	$(VENV)/bin/ruff check seq2seq tests benchmarks
	$(VENV)/bin/ruff format --check seq2seq tests benchmarks
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

# rewrite the code into the linter's format and fix what it can
lint-fix: $(INSTALLED)
	$(VENV)/bin/ruff format seq2seq tests benchmarks
	$(VENV)/bin/ruff check --fix seq2seq tests benchmarks

# removes data/<name>/ of an existing recipe file, nothing else (seq2seq clean checks the name)
clean: | $(INSTALLED)
	$(S2S) clean $(R)
