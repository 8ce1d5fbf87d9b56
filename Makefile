# Two entry points for a fresh machine (see README.md): `make demo` and `make test`.
# Both create ./.venv on first use: torch + torchvision first (pip takes them from the local wheel
# cache where there is one), then meddiff and its dependencies, pinned by envs/constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.14.1 torchvision==0.29.1
CORES ?= 2
SNAKEMAKE_ARGS ?=

.PHONY: demo test lint paper-dry-run clean-demo

$(BIN)/.installed: pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c envs/constraints.txt -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES) --resources gpu=1 \
		--configfile config/demo.yaml $(SNAKEMAKE_ARGS)

test: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" python -m pytest

lint: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --lint --configfile config/demo.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" snakefmt --check Snakefile workflow/rules

paper-dry-run: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake -n --configfile config/config.yaml

clean-demo:
	rm -rf results/demo
