"""The pipeline's parameter declaration (nextflow_schema.json) against the CLI it drives.

nextflow_schema.json is the typed declaration the pipeline validates parameters against (no
plugin); these tests need no Nextflow:

- it is valid JSON Schema (draft 2020-12, for launch forms) and rejects bad values;
- every extraction param is a `bamstore extract` option with the same name, default, choices
  and bounds, and every extract option is a param or set by the pipeline itself;
- versions and pins agree (manifest, package, module containers, conda and pip pins);
- docs/usage.md describes every param.

tests/pipeline/ runs the real Nextflow: the config's defaults equal the schema's, and every
value reaches the store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from bamstore import __version__
from bamstore.cli import extract as extract_command
from bamstore.cli import merge as merge_command

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "nextflow_schema.json").read_text())

# Params that are not `bamstore extract` options, and why.
PIPELINE_ONLY = {
    "input": "the samplesheet (bamstore build --input); checked by BAMSTORE_CHECKSAMPLESHEET",
    "outdir": "where the store, reports/ and pipeline_info/ are published",
    "store_name": "the merge's --out is <store_name>.zarr",
    "append_to": "the store the merge starts from (check-samplesheet --new-samples-for)",
    "fasta": "extract's --reference (CRAM), staged as a file",
    "publish_dir_mode": "Nextflow publishDir mode of the store",
    "container_registry": "the registry of the bamstore image (docker.registry, ...)",
    "help": "prints the parameters",
    "version": "prints the pipeline version",
    "trace_report_suffix": "suffix of the pipeline_info files",
    "slurm_queue": "sbatch -p (-profile slurm)",
    "slurm_account": "sbatch --account (-profile slurm)",
    "slurm_options": "other sbatch options (-profile slurm)",
    "slurm_array_size": "extraction tasks per job array (-profile slurm)",
    "max_cpus": "cap of every task's CPUs (process.resourceLimits)",
    "max_memory": "cap of every task's memory (process.resourceLimits)",
    "max_time": "cap of every task's time (process.resourceLimits)",
}
# Options of `bamstore extract` that are not params, and why.
SET_BY_PIPELINE = {
    "bam": "from the samplesheet",
    "sample": "from the samplesheet (meta.id)",
    "out": "<sample>.zarr in the task directory",
    "index": "the samplesheet's bai, or built by extract in its task directory",
    "stranded": "the samplesheet's strandedness (meta.strandedness)",
    "source_path": "the samplesheet's bam path (the task reads a staged copy)",
    "scale_factor": "the samplesheet's scale_factor column (meta.scale_factor)",
    "reference": "--fasta",
    "threads": "task.cpus",
    "tmp_dir": "the task directory",
    "overwrite": "never needed: every task starts in an empty directory",
    "debug": "logging",
    "quiet": "logging",
}
# Options of `bamstore extract` that the pipeline does not pass yet: its parameters for them
# (and the samplesheet's scale_factor reaching extract) are added on the pipeline's branch. Once
# the pipeline passes one, the test below says to move it to the params or to SET_BY_PIPELINE.
NOT_PASSED_YET: dict[str, str] = {}


def schema_params() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for group in SCHEMA["$defs"].values():
        out.update(group["properties"])
    return out


def click_options(command) -> dict[str, object]:
    return {p.name: p for p in command.params}


def parse_extract(*args: str) -> dict:
    base = ["--bam", "x.bam", "--sample", "s", "--out", "s.zarr"]
    return extract_command.make_context("extract", [*base, *args]).params


def test_schema_is_valid_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    refs = {entry["$ref"] for entry in SCHEMA["allOf"]}
    assert refs == {f"#/$defs/{name}" for name in SCHEMA["$defs"]}
    assert set(SCHEMA["$defs"]["input_output_options"]["required"]) == {"input", "outdir"}
    assert "properties" not in SCHEMA, "declare every param in a group"


def test_every_param_has_a_type_and_a_description() -> None:
    for name, spec in schema_params().items():
        assert spec.get("type") in ("string", "integer", "number", "boolean"), name
        assert spec.get("description"), name
        if "pattern" in spec and name not in ("input",):
            re.compile(spec["pattern"])
        if "enum" in spec and "default" in spec:
            assert spec["default"] in spec["enum"], name


def test_schema_accepts_the_defaults_and_rejects_bad_values(tmp_path: Path) -> None:
    values = {k: s["default"] for k, s in schema_params().items() if "default" in s}
    values.update(input="sheet.csv", outdir=str(tmp_path / "out"), trace_report_suffix="x")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert not list(validator.iter_errors(values))
    for name, bad in [
        ("min_mapq", 256),
        ("min_mapq", -1),
        ("compression", "zstd"),
        ("exclude_flags", "0x10000"),
        ("exclude_flags", "flags"),
        ("chunk_len", 0),
        ("store_name", "a/b"),
        ("store_name", ".."),
        ("input", "sheet.xlsx"),
        ("publish_dir_mode", "move"),
        ("container_registry", "registry.example.org/lab/"),
        ("count_deletions", "false"),
        ("slurm_array_size", -1),
        ("slurm_queue", True),
        ("max_cpus", 0),
        ("max_memory", "1.5.GB"),  # Nextflow: "multiple points"
        ("max_memory", "64"),
        ("max_memory", "64 G"),
        ("max_time", "soon"),
        ("max_time", "1.5.h"),
    ]:
        assert list(validator.iter_errors({**values, name: bad})), (name, bad)
    # values Nextflow's MemoryUnit and Duration read (checked with 25.04.3)
    for name, good in [
        *(("max_memory", v) for v in ("64 GB", "128.GB", "1536.MB", "1.5GB", "2TB", "512 KB")),
        *(("max_time", v) for v in ("2d 12h", "48.h", "90m", "1.5h", "30s", "2days", "3 hours")),
        *(("max_time", v) for v in ("10 min", "45sec", "500ms", "1minute", "2seconds")),
    ]:
        assert not list(validator.iter_errors({**values, name: good})), (name, good)


def test_each_param_is_a_cli_option_with_the_same_default() -> None:
    options = click_options(extract_command)
    cli_defaults = parse_extract()  # what `bamstore extract` uses when the option is not given
    for name, spec in schema_params().items():
        if name in PIPELINE_ONLY:
            continue
        assert name in options, f"param {name} is neither an extract option nor pipeline-only"
        option = options[name]
        assert f"--{name.replace('_', '-')}" in option.opts
        default = spec.get("default")
        if name == "exclude_flags":
            default = int(default, 0)
        assert default == cli_defaults[name], (name, default, cli_defaults[name])
        if hasattr(option.type, "choices"):
            assert sorted(spec["enum"]) == sorted(option.type.choices), name
        if getattr(option.type, "min", None) is not None:
            assert spec["minimum"] == option.type.min, name
        if getattr(option.type, "max", None) is not None:
            assert spec["maximum"] == option.type.max, name
        if option.is_flag:
            assert spec["type"] == "boolean", name


def test_each_cli_option_is_a_param_or_set_by_the_pipeline() -> None:
    params = schema_params()
    for name in click_options(extract_command):
        assert name in params or name in SET_BY_PIPELINE or name in NOT_PASSED_YET, (
            f"bamstore extract --{name.replace('_', '-')} is neither a pipeline param nor "
            "documented in SET_BY_PIPELINE"
        )
    assert set(SET_BY_PIPELINE).isdisjoint(params)
    module = (REPO / "modules" / "local" / "bamstore_extract" / "main.nf").read_text()
    for name in NOT_PASSED_YET:
        flag = f"--{name.replace('_', '-')}"
        assert name not in params and flag not in module, (
            f"the pipeline passes extract's {flag} now: move it from NOT_PASSED_YET to the params "
            "or SET_BY_PIPELINE"
        )
    assert set(PIPELINE_ONLY) <= set(params)
    merge_options = click_options(merge_command)
    for name in ("parts_file", "metadata", "sample_column", "out", "threads"):
        assert name in merge_options, name


def test_extraction_params_are_extract_options_that_the_module_can_render() -> None:
    """BAMSTORE_EXTRACT passes every extraction param but the staged files as the extract
    option of the same name, leaving out false and unset (null) ones: so each is an option,
    and a boolean one must mean false when left out."""
    options = click_options(extract_command)
    cli_defaults = parse_extract()
    for name, spec in SCHEMA["$defs"]["extraction_options"]["properties"].items():
        if spec.get("format") == "file-path":
            continue  # chromsizes, fasta: staged path inputs of the module
        assert name in options, name
        if spec["type"] == "boolean":
            assert cli_defaults[name] is False, f"extract --{name} must default to false"


def test_docs_describe_every_param() -> None:
    usage = (REPO / "docs" / "usage.md").read_text()
    missing = [name for name in schema_params() if f"--{name}" not in usage]
    assert not missing, f"docs/usage.md does not describe: {missing}"


def test_versions_agree() -> None:
    config = (REPO / "nextflow.config").read_text()
    manifest = re.search(r"^manifest\s*\{(.*?)^\}", config, re.M | re.S).group(1)
    assert re.search(r"version\s*=\s*'([^']+)'", manifest).group(1) == __version__
    nf_version = re.search(r"nextflowVersion\s*=\s*'([^']+)'", manifest).group(1)
    assert nf_version.startswith("!>="), "pin Nextflow with '!>=' (hard failure)"
    assert "plugins" not in config, "the pipeline needs no plugin"
    modules = sorted((REPO / "modules" / "local").glob("*/main.nf"))
    assert len(modules) == 5
    for module in modules:
        images = re.findall(r'container\s+"([^"]+)"', module.read_text())
        assert images == [f"bamstore:{__version__}"], (module, images)


@pytest.mark.parametrize("name", ["LICENSE", "CHANGELOG.md", "CITATIONS.md"])
def test_project_files(name: str) -> None:
    text = (REPO / name).read_text()
    assert text.strip()
    if name == "LICENSE":
        assert text.startswith("MIT License")
    if name == "CHANGELOG.md":
        assert f"## {__version__}" in text


def test_every_subpackage_goes_into_the_wheel() -> None:
    """The image and the conda environment install a wheel: each package must be in it."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(find_packages(str(REPO), **config["packages"]["find"]))
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bamstore").rglob("__init__.py")
    }
    assert on_disk <= found, sorted(on_disk - found)
