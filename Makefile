# Two entry points: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# The registry's torch/torchvision pair (CUDA build; runs on CPU too). A local CPU-only torch
# wheel, if the machine has one in pip's find-links, cannot load torchvision's compiled ops.
PIP_INSTALL := PIP_FIND_LINKS= $(PY) -m pip install --disable-pip-version-check -q
PIP_UNINSTALL := $(PY) -m pip uninstall --disable-pip-version-check -y -q

# DALI comes as the extra matching torch's CUDA major ([cu12] / [cu13], jobs/console/dali_env.py), so torch goes in
# first. A DALI wheel of another major is uninstalled before: both own nvidia/dali/, and removing one after
# installing the other would delete the files they share.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_INSTALL) -e '.[test]'
	others="$$($(PY) -m jobs.console.dali_env others)"; if [ -n "$$others" ]; then $(PIP_UNINSTALL) $$others; fi
	$(PIP_INSTALL) -e ".[test,$$($(PY) -m jobs.console.dali_env extra)]"
	touch $@

.PHONY: install test demo lint gpu-check gpu-check-dry-run gpu-wheels
install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(VENV)/bin/tsn demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# GPU check (docs/GPU_CHECK.md): one report in $$GPU_CHECK_OUT (default work_dirs/gpu_check). It uses the repo's
# venv where there is one, else python3 (the GPU machine has no .venv and gets its extra wheels carried).
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)

gpu-check:
	$(GPU_PY) -m tests.gpu.gpu_check

gpu-check-dry-run:
	$(GPU_PY) -m tests.gpu.gpu_check --dry-run

# The wheels the GPU machine lacks, downloaded into .whl/ and cut into parts of <= 60 MiB (one per device call).
gpu-wheels:
	python3 -m tests.gpu.carry download
	python3 -m tests.gpu.carry split
