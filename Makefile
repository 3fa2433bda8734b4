# The two commands: `make run` (the main job, offline) and `make test` (what CI runs).
# Both create .venv and install the package with its extras when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: run test check-clean check-export check-readme nbtest pytest lab install docs readme

# the stamp is named after pyproject.toml's content, so only a real change reinstalls
$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

## run: the main job, offline — fake providers on 127.0.0.1, the real SDKs, learned vs legacy path
run: $(STAMP)
	$(BIN)/computepulse-ai demo --out out/demo

## test: everything CI checks, in CI's order; non-zero exit on any failure
test: $(STAMP) check-clean check-export check-readme nbtest pytest

NOTEBOOKS = $(shell find nbs benchmarks -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' 2>/dev/null | sort)
check-clean: $(STAMP)
	@before=$$(cat $(NOTEBOOKS) | sha1sum); $(BIN)/nbdev-clean; $(BIN)/nbdev-clean --fname benchmarks >/dev/null 2>&1 || true; \
	 after=$$(cat $(NOTEBOOKS) | sha1sum); \
	 if [ "$$before" != "$$after" ]; then echo "FAIL: notebooks were not clean (nbdev-clean changed them)"; exit 1; fi; \
	 echo "notebooks clean"

check-export: $(STAMP)
	@before=$$(find computepulse_ai -name '*.py' | sort | xargs cat | sha1sum); $(BIN)/nbdev-export; \
	 after=$$(find computepulse_ai -name '*.py' | sort | xargs cat | sha1sum); \
	 if [ "$$before" != "$$after" ]; then echo "FAIL: library out of sync with notebooks (nbdev-export changed it)"; exit 1; fi; \
	 echo "library in sync with notebooks"

check-readme: $(STAMP)
	$(BIN)/python tools/build_readme.py --check

nbtest: $(STAMP)
	$(BIN)/nbdev-test --n-workers 2
	$(BIN)/nbdev-test benchmarks --n-workers 2

pytest: $(STAMP)
	$(BIN)/python -m pytest

## readme: regenerate README.md from nbs/index.ipynb (no Quarto needed); `make test` fails while it is stale
readme: $(STAMP)
	$(BIN)/python tools/build_readme.py

## docs: build the offline HTML site into site/ from nbs/ and benchmarks/ (executes the notebooks);
## open site/index.html in a browser. `python tools/build_docs.py --no-execute` keeps stored outputs.
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py

## lab: JupyterLab rooted at the repository (nbs/ and benchmarks/ both open); --allow-root when run as root (containers)
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(ALLOW_ROOT) nbs/index.ipynb
