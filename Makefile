# bamstore: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench quantnado clean

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

quantnado: install  ## QuantNado 0.4.3 in .venv-quantnado (Python >= 3.12): the compatibility tests use it
	$(BIN)/python benchmarks/quantnado_env.py .venv-quantnado

bench: install  ## benchmark table (benchmarks/README.md); BENCH_ARGS=--quick for a short run
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-quantnado build demo *.egg-info bamstore/_coverage.c bamstore/*.so
