# bamstore: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-pipeline lint docs bench bench-scale quantnado deeptools nextflow nf-test image lock clean \
        slurm-up slurm-down test-slurm

# Nextflow from Maven Central (tools/nextflow/pom.xml), launched by .tools/bin/nextflow
NEXTFLOW := .tools/bin/nextflow
NXF_LIB  := .tools/nextflow/lib

$(STAMP): pyproject.toml setup.py bamstore/engine/_coverage.pyx bamstore/query/_chunkread.pyx \
    bamstore/layout/_bloscframe.pyx
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint,plot,xarray,dask,bench,bigwig,remote]'
	$(BIN)/python -c "from bamstore.engine.kernel import available_kernels as k; \
	    assert 'compiled' in k(), 'compiled kernel did not build'; print('kernels:', k())"
	touch $@

install: $(STAMP)

demo: install  ## build a store from the bundled test BAMs and summarise it
	@mkdir -p demo
	$(BIN)/bamstore build --input tests/data/samplesheet.csv --out demo/demo.zarr \
	    --jobs 2 --overwrite
	$(BIN)/bamstore validate demo/demo.zarr
	$(BIN)/bamstore inspect demo/demo.zarr

test: install  ## the test suite (pytest, one worker per core), without test-pipeline and test-slurm
	$(BIN)/python -m pytest -q -n auto --durations=10

# The nf-test tests (modules, workflow, pipeline: nf-test.config), then what nf-test cannot express
# (tests/pipeline: stores equal to `bamstore build`, podman). --ci: a missing or changed snapshot
# fails the test instead of being written. The tasks run this checkout's bamstore (the venv's).
test-pipeline: install nextflow nf-test  ## the pipeline end to end with the real Nextflow: nf-test, then tests/pipeline
	PATH="$(CURDIR)/$(BIN):$$PATH" $(NFTEST) test --ci
	BAMSTORE_REQUIRE_NEXTFLOW=1 $(BIN)/python -m pytest -q -m pipeline tests/pipeline

$(NEXTFLOW): tools/nextflow/pom.xml tools/nextflow/nextflow.sh
	rm -rf $(NXF_LIB)
	mvn -q -B -f tools/nextflow/pom.xml dependency:copy-dependencies \
	    -DoutputDirectory=$(CURDIR)/$(NXF_LIB) -DincludeScope=runtime
	install -D -m 755 tools/nextflow/nextflow.sh $@
	$@ -version | grep -i version

nextflow: $(NEXTFLOW)  ## Nextflow (pinned in tools/nextflow/pom.xml) at .tools/bin/nextflow

# nf-test, built from its source release (tools/nf-test/build.sh): the vendored copy when there
# is one, else the release's tag archive, which must have the pinned SHA-256
NFTEST         := .tools/bin/nf-test
NFTEST_VERSION := 0.9.5
NFTEST_SHA256  ?= 25beb60bbc63b176aeffa0dc644d255221516f377947e534f1971ee57be3938a
NFTEST_VENDOR  := ../shared/vendor/nf-test-$(NFTEST_VERSION)-src.tar.gz
NFTEST_SRC     ?= $(if $(wildcard $(NFTEST_VENDOR)),$(NFTEST_VENDOR),https://github.com/askimed/nf-test/archive/refs/tags/v$(NFTEST_VERSION).tar.gz)

$(NFTEST): tools/nf-test/build.sh tools/nf-test/nf-test.sh | $(NEXTFLOW)
	tools/nf-test/build.sh $(NFTEST_SRC) $(NFTEST_SHA256) .tools

nf-test: $(NFTEST)  ## nf-test $(NFTEST_VERSION) at .tools/bin/nf-test (built once; offline afterwards)

lint: install nextflow  ## ruff, docs/cli.md and the docs' links, and `nextflow lint` over every .nf and .config file
	$(BIN)/ruff check bamstore tests benchmarks scripts bin/bamstore
	$(BIN)/ruff format --check bamstore tests benchmarks scripts bin/bamstore
	$(BIN)/python -m pytest -q -n 0 tests/test_cli_docs.py tests/test_doc_links.py
	@# strict syntax (the default parser of newer Nextflow); warnings fail the target too.
	@# nf-test.config is nf-test's, not a Nextflow config
	$(NEXTFLOW) lint -o concise $$(git ls-files '*.nf' '*.config' ':!nf-test.config') 2>&1 | tee .tools/lint.log
	@! grep -qE '^(Error|Warn)' .tools/lint.log || { echo "nextflow lint: fix the above" >&2; exit 1; }

docs: install  ## docs/cli.md from the click commands (scripts/cli_docs.py); tests/test_cli_docs.py fails when it is stale
	$(BIN)/python scripts/cli_docs.py docs/cli.md

slurm-up:  ## start the local one-node SLURM cluster (needs root; state in .slurm/); a no-op when up
	scripts/slurm-up.sh
	@echo 'export SLURM_CONF=$(shell scripts/slurm-up.sh --conf)   # for sinfo, sbatch, nextflow'

slurm-down:  ## stop the daemons slurm-up started (by their pid files)
	scripts/slurm-down.sh

test-slurm: install nextflow  ## the slurm profile on the local cluster (tests/pipeline/test_slurm.py; needs root)
	$(BIN)/python -m pytest -q -m slurm tests/pipeline/test_slurm.py

quantnado: install  ## QuantNado 0.4.3 in .venv-quantnado (Python >= 3.12): the compatibility tests use it
	$(BIN)/python benchmarks/quantnado_env.py .venv-quantnado

deeptools: install  ## deeptools 4.0 in .venv-deeptools (Python >= 3.12): the normalisation tests compare with it
	$(BIN)/python benchmarks/deeptools_env.py .venv-deeptools

bench: install  ## benchmark table (benchmarks/README.md); BENCH_ARGS=--quick for a short run
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-scale: install  ## merge and append of 100/1,000/5,000-sample cohorts, with and without --shard (docs/scaling.md)
	$(BIN)/python benchmarks/scale.py $(BENCH_ARGS)

image:  ## the pipeline's image, localhost/bamstore:<version>, with podman (docs/containers.md)
	bash containers/build-image.sh

lock:  ## re-pin the image's Python dependencies (containers/*.lock) from pyproject.toml
	bash containers/update-locks.sh

clean:
	rm -rf $(VENV) .venv-quantnado .venv-deeptools .tools .nf-test .nf-test.log build demo *.egg-info \
	    bamstore/engine/_coverage.c bamstore/query/_chunkread.c bamstore/layout/_bloscframe.c \
	    bamstore/engine/*.so bamstore/query/*.so bamstore/layout/*.so
