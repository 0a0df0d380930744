"""The pipeline's parameters and samplesheet rules against the CLI's (no Nextflow needed).

- nextflow_schema.json and assets/schema_input.json are valid JSON Schema (draft 2020-12).
- nextflow.config's params, nextflow_schema.json's params and their defaults agree.
- Every pipeline param is an option of `bamstore extract`/`merge` (same name, same default,
  same choices and bounds) or a documented pipeline-only param; every option of
  `bamstore extract` is a param or documented as set by the pipeline itself; the ext.args that
  conf/modules.config builds from the params parse with the real click command.
- One table of samplesheets (tests/samplesheet_cases.py) goes through both validators:
  `bamstore check-samplesheet`'s (bamstore/samplesheet.py) and the pipeline's. The pipeline's
  is emulated here: a port of prepareSamplesheet() and checkSampleNames() (the Groovy in
  subworkflows/local/utils_bamstore_pipeline/main.nf) and a shim of nf-schema (2.7.x) around
  python-jsonschema, documented at `nf_schema_errors`. The shim and the port are models of code
  that runs only under Nextflow: nf-test in CI checks the real thing on the good path.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import sys
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nf_harness import EXPR, REPO, Obj, config_params, evaluate, ext_setting
from samplesheet_cases import CASES, Case

from bamstore import __version__
from bamstore.cli import extract as extract_command
from bamstore.cli import merge as merge_command
from bamstore.errors import InputError
from bamstore.samplesheet import read_samplesheets

SCHEMA = json.loads((REPO / "nextflow_schema.json").read_text())
INPUT_SCHEMA = json.loads((REPO / "assets" / "schema_input.json").read_text())

# Params that are not `bamstore extract` options, and why.
PIPELINE_ONLY = {
    "input": "the samplesheet (bamstore build --input); the pipeline reads it itself",
    "outdir": "where the store and pipeline_info/ are published",
    "store_name": "the merge's --out is <store_name>.zarr",
    "publish_dir_mode": "Nextflow publishDir mode",
    "monochrome_logs": "nf-schema/nf-core log colours",
    "help": "nf-schema help",
    "help_full": "nf-schema help",
    "show_hidden": "nf-schema help",
    "version": "prints the pipeline version",
    "validate_params": "nf-schema parameter validation on/off",
    "trace_report_suffix": "suffix of the pipeline_info files",
    "slurm_queue": "sbatch -p (-profile slurm)",
    "slurm_account": "sbatch --account (-profile slurm)",
    "slurm_options": "other sbatch options (-profile slurm)",
    "slurm_array_size": "extraction tasks per job array (-profile slurm)",
}
# Options of `bamstore extract` that are not params, and why.
SET_BY_PIPELINE = {
    "bam": "from the samplesheet",
    "sample": "from the samplesheet (meta.id)",
    "out": "<sample>.zarr in the task directory",
    "index": "the samplesheet's bai, or SAMTOOLS_INDEX's output",
    "stranded": "the samplesheet's strandedness (meta.strandedness, via ext.args)",
    "threads": "task.cpus",
    "tmp_dir": "the task directory",
    "overwrite": "never needed: every task starts in an empty directory",
    "reference": "CRAM input is not supported by the pipeline (BAM only)",
    "shard": "not a pipeline param yet: the pipeline's default layout is the option's default "
    "(docs/scaling.md says what a param `shard` must pass to extract and merge)",
    "debug": "logging",
    "quiet": "logging",
}


def schema_params() -> dict[str, dict]:
    out = {}
    for group in SCHEMA["$defs"].values():
        out.update(group["properties"])
    out.update(SCHEMA.get("properties", {}))
    return out


def click_options(command) -> dict[str, object]:
    return {p.name: p for p in command.params}


# --------------------------------------------------------------------------------------------
# Schemas and params


@pytest.mark.parametrize("schema", [SCHEMA, INPUT_SCHEMA], ids=["nextflow_schema", "input"])
def test_schema_is_valid_draft_2020_12(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_group_is_used():
    refs = {entry["$ref"] for entry in SCHEMA["allOf"]}
    assert refs == {f"#/$defs/{name}" for name in SCHEMA["$defs"]}
    assert set(SCHEMA["$defs"]["input_output_options"]["required"]) == {"input", "outdir"}


def test_params_in_config_and_schema_agree():
    config = config_params()
    schema = schema_params()
    assert set(config) == set(schema), (
        f"only in nextflow.config: {sorted(set(config) - set(schema))}; "
        f"only in nextflow_schema.json: {sorted(set(schema) - set(config))}"
    )
    for name, value in config.items():
        if value is EXPR:
            assert "default" not in schema[name], name
        elif value is None:
            assert "default" not in schema[name], f"{name}: null in config, default in schema"
        else:
            assert schema[name].get("default") == value, f"{name}: {value!r} vs schema"
    assert config["store_name"] == "bamstore" and config["publish_dir_mode"] == "copy"


def test_schema_validates_the_defaults_and_rejects_bad_values(tmp_path: Path):
    sheet = tmp_path / "s.csv"
    sheet.write_text("sample,bam\n")
    values = {k: v for k, v in config_params().items() if v is not EXPR and v is not None}
    values.update(input=str(sheet), outdir=str(tmp_path / "out"), trace_report_suffix="x")
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
        ("publish_dir_mode", "hardlink"),
        ("slurm_array_size", -1),
        ("slurm_queue", True),
    ]:
        assert list(validator.iter_errors({**values, name: bad})), (name, bad)


def test_each_param_is_a_cli_option_with_the_same_default():
    options = click_options(extract_command)
    cli_defaults = parse_extract("")  # what `bamstore extract` uses when the option is not given
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


def test_each_cli_option_is_a_param_or_set_by_the_pipeline():
    params = schema_params()
    for name in click_options(extract_command):
        assert name in params or name in SET_BY_PIPELINE, (
            f"bamstore extract --{name.replace('_', '-')} is neither a pipeline param nor "
            "documented in SET_BY_PIPELINE"
        )
    assert set(SET_BY_PIPELINE).isdisjoint(params)
    assert set(PIPELINE_ONLY) <= set(params)
    # the merge options the pipeline uses exist
    merge_options = click_options(merge_command)
    for name in ("parts_file", "metadata", "sample_column", "out", "threads"):
        assert name in merge_options, name


def extract_args(meta: dict, **params) -> str:
    kind, source = ext_setting("BAMSTORE_EXTRACT", "args")
    assert kind == "closure"
    values = {k: v for k, v in config_params().items() if v is not EXPR}
    values.update(params)
    return evaluate(source, {"meta": Obj(meta), "params": Obj(values), "task": Obj()})


def parse_extract(args: str) -> dict:
    base = ["--bam", "x.bam", "--sample", "s", "--out", "s.zarr"]
    ctx = extract_command.make_context("extract", [*base, *shlex.split(args)])
    return ctx.params


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("chromosomes", "chr1,chrX", "chr1,chrX"),
        ("min_mapq", 20, 20),
        ("exclude_flags", "0x4", 4),
        ("exclude_flags", 1024, 1024),
        ("count_deletions", True, True),
        ("chunk_len", 4096, 4096),
        ("compression", "none", "none"),
    ],
)
def test_each_extraction_param_reaches_the_cli(name, value, expected):
    default = parse_extract(extract_args({"id": "s", "strandedness": ""}))
    changed = parse_extract(extract_args({"id": "s", "strandedness": ""}, **{name: value}))
    assert changed[name] == expected
    assert changed[name] != default[name]


def test_ext_args_defaults_and_strandedness():
    plain = parse_extract(extract_args({"id": "s", "strandedness": ""}))
    defaults = parse_extract("")
    for name in ("chromosomes", "min_mapq", "count_deletions", "chunk_len", "compression"):
        assert plain[name] == defaults[name], name
    assert plain["exclude_flags"] == 0x704
    assert plain["stranded"] is None
    assert parse_extract(extract_args({"id": "s", "strandedness": "R"}))["stranded"] == "R"


def test_docs_describe_every_param():
    usage = (REPO / "docs" / "usage.md").read_text()
    missing = [name for name in schema_params() if f"--{name}" not in usage]
    assert not missing, f"docs/usage.md does not describe: {missing}"


def test_versions_agree():
    config = (REPO / "nextflow.config").read_text()
    manifest = re.search(r"^manifest\s*\{(.*?)^\}", config, re.M | re.S).group(1)
    assert re.search(r"version\s*=\s*'([^']+)'", manifest).group(1) == __version__
    nf_version = re.search(r"nextflowVersion\s*=\s*'([^']+)'", manifest).group(1)
    assert nf_version.startswith("!>="), "pin Nextflow with '!>=' (hard failure)"
    assert re.search(r"id\s+'nf-schema@\d+\.\d+\.\d+'", config), "pin nf-schema"
    for module in (REPO / "modules" / "local").glob("*/main.nf"):
        images = re.findall(r'container\s+"([^"]+)"', module.read_text())
        assert images == [f"ghcr.io/bamstore/bamstore:{__version__}"], (module, images)


# --------------------------------------------------------------------------------------------
# The pipeline's samplesheet validation, emulated


def precheck(sheet: Path) -> tuple[list[str], str, list[str]]:
    """A port of prepareSamplesheet() (utils_bamstore_pipeline/main.nf).

    Returns (problems, the text of the normalised copy nf-schema validates, sample names).
    """
    separators = {"csv": ",", "tsv": "\t"}
    extension = sheet.suffix.lstrip(".").lower()
    if extension not in separators:
        return [f"must end in .csv or .tsv, not .{extension}"], "", []
    separator = separators[extension]
    other = "\t" if separator == "," else ","
    raw = sheet.read_text(encoding="utf-8")
    first = raw.split("\n", 1)[0].rstrip("\r").lstrip("\ufeff")
    if not first.strip():
        return ["empty (no header line)"], "", []
    if separator not in first and other in first:
        return ["header separated by the wrong character"], "", []
    # Nextflow's splitCsv: empty lines skipped, quotes honoured
    lines = [ln for ln in raw.lstrip("\ufeff").splitlines() if ln]
    rows = list(csv.reader(lines, delimiter=separator, quotechar='"'))
    header = [h.strip() for h in rows[0]]
    problems = []
    missing = [c for c in ("sample", "bam") if c not in header]
    if missing:
        problems.append(f"header lacks {missing}")
    if any(not h for h in header):
        problems.append("empty column name")
    if any(header.count(h) > 1 for h in header if h):
        problems.append("repeated column")
    entries = []
    for fields in rows[1:]:
        if all(not f.strip() for f in fields):
            continue
        entries.append(fields)
        if len(fields) != len(header):
            problems.append(f"entry {len(entries)}: {len(fields)} fields, header {len(header)}")
    if not entries and not problems:
        problems.append("no samples")
    if problems:
        return problems, "", []
    samples = [f[header.index("sample")].strip() for f in entries]
    base = sheet.resolve().parent
    out_rows = []
    for fields in entries:
        values = [f.strip() for f in fields]
        for column in ("bam", "bai"):
            if column in header:
                i = header.index(column)
                value = values[i]
                if value and not (
                    value.startswith("/") or re.match(r"^[A-Za-z][\w+.-]*://", value)
                ):
                    values[i] = str(base / value)
        out_rows.append(values)

    def field(value: str) -> str:
        if separator in value or '"' in value or "\n" in value:
            return '"' + value.replace('"', '""') + '"'
        return value

    text = "".join(separator.join(field(v) for v in row) + "\n" for row in [header, *out_rows])
    return [], text, samples


def org_json_value(text: str):
    """org.json's JSONObject.stringToValue, which nf-schema applies to every CSV value."""
    if text == "":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() == "null":
        return None
    if text[0].isdigit() or text[0] == "-":
        if re.search(r"[.eE]", text) or text == "-0":
            if re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
                return Decimal(text)
            return text
        if re.fullmatch(r"-?\d+", text) and not re.match(r"-?0\d", text):
            return int(text)
    return text


def _json_value(value):
    """What the JSON Schema validator sees: a BigDecimal with no fraction is an integer."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _exists(validator, exists, instance, schema):
    if exists and isinstance(instance, str) and not Path(instance).exists():
        yield jsonschema.ValidationError(f"the file or directory '{instance}' does not exist")


def _unique_entries(validator, keys, instance, schema):
    if not isinstance(instance, list):
        return
    seen = set()
    for n, entry in enumerate(instance, start=1):
        values = tuple(f"{k}:{entry[k]}" for k in keys if k in entry)
        if values and values in seen:
            yield jsonschema.ValidationError(f"Entry {n}: Detected duplicate entries: {values}")
        seen.add(values)


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("file-path")
def _file_path(value) -> bool:  # nf-schema: a path that exists must not be a directory
    return not (isinstance(value, str) and Path(value).is_dir())


NfSchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"exists": _exists, "uniqueEntries": _unique_entries}
)


def nf_schema_rows(text: str, separator: str) -> list[dict]:
    """nf-schema's reading of a CSV/TSV: header row, values stripped and type-inferred, empty
    values left out (the JSON it validates has no nulls)."""
    lines = [ln for ln in text.splitlines() if ln]
    rows = list(csv.reader(lines, delimiter=separator, quotechar='"'))
    header = rows[0]
    out = []
    for fields in rows[1:]:
        entry = {}
        for i, name in enumerate(header):
            value = org_json_value(fields[i].strip()) if i < len(fields) else None
            if value is not None:
                entry[name] = value
        out.append(entry)
    return out


def nf_schema_errors(text: str, separator: str, launch_dir: Path) -> tuple[list[str], list]:
    """samplesheetToList's validation, emulated: JSON Schema draft 2020-12 plus nf-schema's
    keywords `exists` (the path exists), `format: file-path` (not a directory) and
    `uniqueEntries` (no two entries share these values); `errorMessage` and `meta` only shape
    messages and channels. Relative paths resolve against the launch directory, as Nextflow's
    file() does. Returns (errors, the rows as read)."""
    rows = nf_schema_rows(text, separator)
    instance = [
        {
            k: (
                str(launch_dir / v)
                if k in ("bam", "bai") and isinstance(v, str) and not v.startswith("/")
                else _json_value(v)
            )
            for k, v in row.items()
        }
        for row in rows
    ]
    validator = NfSchemaValidator(INPUT_SCHEMA, format_checker=_FORMATS)
    return [e.message for e in validator.iter_errors(instance)], rows


def java_string(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # int, or Decimal (whose str() is Java's BigDecimal.toString())


def pipeline_verdict(sheet: Path, launch_dir: Path) -> tuple[str, list[str]]:
    problems, text, samples = precheck(sheet)
    if problems:
        return "precheck", problems
    separator = "\t" if sheet.suffix == ".tsv" else ","
    errors, rows = nf_schema_errors(text, separator, launch_dir)
    if errors:
        return "schema", errors
    changed = [java_string(r["sample"]) for r in rows if java_string(r["sample"]) not in samples]
    if changed:
        return "names", changed
    return "ok", []


def python_verdict(sheet: Path) -> tuple[str, str]:
    try:
        read_samplesheets([sheet])
    except InputError as exc:
        return "bad", str(exc)
    return "ok", ""


def write_case(case: Case, folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in case.files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    for name in case.dirs:
        (folder / name).mkdir(parents=True)
    sheet = folder / case.name
    sheet.write_text(case.text.replace("{dir}", str(folder)), encoding=case.encoding)
    return sheet


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_samplesheet_case(case: Case, tmp_path: Path, monkeypatch):
    sheet = write_case(case, tmp_path / "sheets")
    launch = tmp_path / "launch"  # the pipeline is launched elsewhere
    launch.mkdir()
    monkeypatch.chdir(launch)
    python, message = python_verdict(sheet)
    pipeline, problems = pipeline_verdict(sheet, launch)
    assert python == case.python, message
    assert pipeline == case.pipeline, problems
    if case.why:
        assert python == "ok" and pipeline != "ok", "a documented difference must be stricter"
    else:
        assert (python == "ok") == (pipeline == "ok")


def test_every_rule_is_exercised():
    kinds = {c.pipeline for c in CASES}
    assert kinds == {"ok", "precheck", "schema", "names"}
    assert sum(c.python == "ok" for c in CASES) >= 10
    assert sum(c.python == "bad" for c in CASES) >= 20


def test_nf_schema_alone_would_resolve_relative_paths_against_the_launch_dir(tmp_path: Path):
    """Why prepareSamplesheet() writes a copy with absolute paths."""
    sheet = write_case(CASES[0], tmp_path / "sheets")
    (tmp_path / "launch").mkdir()
    errors, _ = nf_schema_errors(sheet.read_text(), ",", tmp_path / "launch")
    assert any("does not exist" in e for e in errors)
    _, copy, _ = precheck(sheet)
    assert not nf_schema_errors(copy, ",", tmp_path / "launch")[0]


def test_schema_meta_columns():
    props = INPUT_SCHEMA["items"]["properties"]
    assert list(props)[:4] == ["sample", "bam", "bai", "strandedness"]  # channel order
    assert props["sample"]["meta"] == ["id"] and props["strandedness"]["meta"] == ["strandedness"]
    assert all("errorMessage" in spec for spec in props.values())
    assert INPUT_SCHEMA["items"]["required"] == ["sample", "bam"]
