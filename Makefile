# digitrec: `make run` does the whole job, `make test` runs the tests.
# Both create the virtual environment in .venv on first use and reuse it afterwards.

PYTHON ?= python3
TORCH  ?= torch==2.13.0
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
RUN    := runs/main-$(shell date +%Y%m%d-%H%M%S)

.PHONY: run test env browser bench clean

## run: fetch MNIST, train the default model, evaluate it and write the report
run: $(STAMP)
	$(BIN)/digitrec fetch
	$(BIN)/digitrec train --out $(RUN)
	$(BIN)/digitrec evaluate --checkpoint $(RUN)/best.pt
	@echo "trained: $(RUN)/best.pt (report: $(RUN)/report.md)"
	@echo "digitrec predict and digitrec serve still use the model shipped with digitrec;"
	@echo "to use the new one: $(BIN)/digitrec predict IMAGE --checkpoint $(RUN)/best.pt"
	@echo "                    $(BIN)/digitrec serve --checkpoint $(RUN)/best.pt"

## test: the test suite (installs Debian's Chromium for the browser test when run as root)
test: $(STAMP) browser
	$(BIN)/python -m pytest

env: $(STAMP)

# The environment: torch first, pinned, so pip takes the CPU build instead of several GB of CUDA.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[serve,onnx,test,heif]"
	rm -f $(VENV)/.installed-* && touch $@

# Debian packages the tests use: Chromium for the browser test, Fashion-MNIST for a real-data test.
# Installed when missing and run as root; otherwise those tests skip and say why.
browser:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="chromium"; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not installed:$$missing (the tests that need them will be skipped)"; fi; \
	fi

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
