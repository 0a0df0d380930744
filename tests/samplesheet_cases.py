"""One table of samplesheets, good and bad, for both validators (tests/test_schemas.py).

Each case is a samplesheet text (with `{dir}` standing for the folder the test writes it in),
the files to create beside it, and the verdicts:

- `python`: `bamstore check-samplesheet` (bamstore/samplesheet.py) accepts ("ok") or rejects
  ("bad") it;
- `pipeline`: the pipeline accepts or rejects it, and which of its steps rejects it:
  "precheck" (prepareSamplesheet() in subworkflows/local/utils_bamstore_pipeline: separator,
  header, field counts), "schema" (nf-schema with assets/schema_input.json) or "names"
  (checkSampleNames(): a sample name that nf-schema read as a number and changed).

`pipeline` differs from `python` only in the cases listed with a `why`: nf-schema reads CSV
values that look like numbers or booleans as such, so a few names bamstore accepts are refused
by the pipeline (with a message saying to start them with a letter). Nothing the Python
validator rejects is accepted by the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    python: str  # "ok" | "bad"
    pipeline: str  # "ok" | "precheck" | "schema" | "names"
    name: str = "samplesheet.csv"
    files: tuple[str, ...] = ("a.bam", "a.bam.bai", "b.bam", "sub/c.bam")
    dirs: tuple[str, ...] = ()
    why: str = ""
    encoding: str = "utf-8"
    extra: dict = field(default_factory=dict)


CASES: list[Case] = [
    # ---------------------------------------------------------------- accepted by both
    Case("minimal", "sample,bam\na,a.bam\n", "ok", "ok"),
    Case(
        "all_columns",
        "sample,bam,bai,strandedness,condition,replicate\n"
        "a,a.bam,a.bam.bai,U,treated,1\nb,b.bam,,F,control,1\nc,sub/c.bam,,R,treated,2\n"
        "d,{dir}/b.bam,,,control,2\n",
        "ok",
        "ok",
    ),
    Case("tsv", "sample\tbam\tstrandedness\na\ta.bam\tR\n", "ok", "ok", name="samplesheet.tsv"),
    Case("absolute_paths", "sample,bam,bai\na,{dir}/a.bam,{dir}/a.bam.bai\n", "ok", "ok"),
    Case("blank_lines", "sample,bam\n\na,a.bam\n\nb,b.bam\n\n", "ok", "ok"),
    Case("separator_only_line", "sample,bam\na,a.bam\n,\nb,b.bam\n", "ok", "ok"),
    Case("quoted_metadata", 'sample,bam,note\na,a.bam,"treated, 2 h"\n', "ok", "ok"),
    Case("spaces_around_values", "sample , bam\n a , a.bam \n", "ok", "ok"),
    Case("byte_order_mark", "\ufeffsample,bam\na,a.bam\n", "ok", "ok"),
    Case("name_characters", "sample,bam\nA-1_b.c+d,a.bam\n", "ok", "ok"),
    Case("integer_name", "sample,bam\n123,a.bam\n", "ok", "ok"),
    Case("leading_zero_name", "sample,bam\n007,a.bam\n", "ok", "ok"),
    Case("dots_in_name", "sample,bam\n...,a.bam\n", "ok", "ok"),
    # ---------------------------------------------------------------- rejected by both
    Case("empty_file", "", "bad", "precheck"),
    Case("blank_header", "\nsample,bam\na,a.bam\n", "bad", "precheck"),
    Case("header_only", "sample,bam\n", "bad", "precheck"),
    Case("no_bam_column", "sample,bai\na,a.bam.bai\n", "bad", "precheck"),
    Case("no_sample_column", "bam\na.bam\n", "bad", "precheck"),
    Case("extension", "sample,bam\na,a.bam\n", "bad", "precheck", name="samplesheet.txt"),
    Case("csv_with_tabs", "sample\tbam\na\ta.bam\n", "bad", "precheck"),
    Case("tsv_with_commas", "sample,bam\na,a.bam\n", "bad", "precheck", name="s.tsv"),
    Case("trailing_separator", "sample,bam,\na,a.bam,\n", "bad", "precheck"),
    Case("repeated_column", "sample,bam,bam\na,a.bam,b.bam\n", "bad", "precheck"),
    Case("too_many_fields", "sample,bam\na,a.bam,extra\n", "bad", "precheck"),
    Case("too_few_fields", "sample,bam,strandedness\na,a.bam\n", "bad", "precheck"),
    Case("empty_sample", "sample,bam\n,a.bam\n", "bad", "schema"),
    Case("space_in_name", "sample,bam\na b,a.bam\n", "bad", "schema"),
    Case("slash_in_name", "sample,bam\na/b,a.bam\n", "bad", "schema"),
    Case("non_ascii_name", "sample,bam\nprobe_ä,a.bam\n", "bad", "schema"),
    Case("dot_name", "sample,bam\n.,a.bam\n", "bad", "schema"),
    Case("dotdot_name", "sample,bam\n..,a.bam\n", "bad", "schema"),
    Case("duplicate_sample", "sample,bam\na,a.bam\na,b.bam\n", "bad", "schema"),
    Case("duplicate_integer_sample", "sample,bam\n12,a.bam\n12,b.bam\n", "bad", "schema"),
    Case("strandedness_unknown", "sample,bam,strandedness\na,a.bam,X\n", "bad", "schema"),
    Case("strandedness_lowercase", "sample,bam,strandedness\na,a.bam,r\n", "bad", "schema"),
    Case("strandedness_number", "sample,bam,strandedness\na,a.bam,1\n", "bad", "schema"),
    Case("empty_bam", "sample,bam\na,\n", "bad", "schema"),
    Case("missing_bam", "sample,bam\na,nope.bam\n", "bad", "schema"),
    Case("missing_bai", "sample,bam,bai\na,a.bam,nope.bai\n", "bad", "schema"),
    Case("bam_is_a_folder", "sample,bam\na,folder.bam\n", "bad", "schema", dirs=("folder.bam",)),
    Case("relative_path_outside", "sample,bam\na,../a.bam\n", "bad", "schema"),
    # ---------------------------------------------------------------- known differences
    Case(
        "decimal_name",
        "sample,bam\n1.5,a.bam\n",
        "ok",
        "schema",
        why="nf-schema reads 1.5 as a number; the schema takes strings and integers only",
    ),
    Case(
        "exponent_name",
        "sample,bam\n10E8,a.bam\n",
        "ok",
        "names",
        why="nf-schema reads 10E8 as the number 1.0E+9, which would rename the sample",
    ),
    Case(
        "boolean_name",
        "sample,bam\ntrue,a.bam\n",
        "ok",
        "schema",
        why="nf-schema reads true as a boolean",
    ),
]
