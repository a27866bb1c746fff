# Two entry points: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# The registry's torch/torchvision pair (CUDA build; runs on CPU too). A local CPU-only torch
# wheel, if the machine has one in pip's find-links, cannot load torchvision's compiled ops.
PIP_INSTALL := PIP_FIND_LINKS= $(PY) -m pip install --disable-pip-version-check -q

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_INSTALL) -e '.[test]'
	touch $@

.PHONY: install test demo lint
install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(VENV)/bin/tsn demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
