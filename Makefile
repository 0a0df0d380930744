# bamstore: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench quantnado image lock clean slurm-up slurm-down test-slurm

$(STAMP): pyproject.toml setup.py bamstore/_coverage.pyx
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,plot,xarray,bench,bigwig,remote]'
	$(BIN)/python -c "from bamstore.kernel import available_kernels as k; \
	    assert 'compiled' in k(), 'compiled kernel did not build'; print('kernels:', k())"
	touch $@

install: $(STAMP)

demo: install  ## build a store from the bundled test BAMs and summarise it
	@mkdir -p demo
	$(BIN)/bamstore build --input tests/data/samplesheet.csv --out demo/demo.zarr \
	    --jobs 2 --overwrite
	$(BIN)/bamstore validate demo/demo.zarr
	$(BIN)/bamstore inspect demo/demo.zarr

test: install  ## the test suite (pytest); nf-test needs Nextflow and is run by CI elsewhere
	$(BIN)/python -m pytest -q

lint: install  ## ruff, and reftrace over every .nf file (parse + includes)
	$(BIN)/ruff check bamstore tests benchmarks bin/bamstore
	$(BIN)/ruff format --check bamstore tests benchmarks bin/bamstore
	$(BIN)/python tests/nf_lint.py

slurm-up:  ## start the local one-node SLURM cluster (needs root; state in .slurm/); a no-op when up
	scripts/slurm-up.sh
	@echo 'export SLURM_CONF=$(shell scripts/slurm-up.sh --conf)   # for sinfo, sbatch, nextflow'

slurm-down:  ## stop the daemons slurm-up started (by their pid files)
	scripts/slurm-down.sh

test-slurm: install  ## the slurm profile on the local cluster (tests/pipeline/test_slurm.py; needs root)
	$(BIN)/python -m pytest -q -m slurm tests/pipeline/test_slurm.py

quantnado: install  ## QuantNado 0.4.3 in .venv-quantnado (Python >= 3.12): the compatibility tests use it
	$(BIN)/python benchmarks/quantnado_env.py .venv-quantnado

bench: install  ## benchmark table (benchmarks/README.md); BENCH_ARGS=--quick for a short run
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

image:  ## the pipeline's image, localhost/bamstore:<version>, with podman (docs/containers.md)
	bash containers/build-image.sh

lock:  ## re-pin the image's Python dependencies (containers/*.lock) from pyproject.toml
	bash containers/update-locks.sh

clean:
	rm -rf $(VENV) .venv-quantnado build demo *.egg-info bamstore/_coverage.c bamstore/*.so
