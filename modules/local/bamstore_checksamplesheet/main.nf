process BAMSTORE_CHECKSAMPLESHEET {
    tag "${samplesheet.name}"
    label 'process_single'

    container "bamstore:0.1.0"

    input:
    path samplesheet
    path cohort, stageAs: 'cohort/*'  // [] for none; else the store to grow: rows it holds are left out
    val code_digest   // the bamstore package's digest: a change of its code re-runs the task

    output:
    path "samplesheet.valid.csv", emit: csv
    tuple val("${task.process}"), val('bamstore'), eval("bamstore --version | sed 's/^bamstore, version //'"), emit: versions_bamstore, topic: versions
    tuple val("${task.process}"), val('bamstore_code'), val(code_digest), emit: versions_bamstore_code, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def cohort_arg = cohort ? "--new-samples-for ${cohort}" : ''
    // Every rule of `bamstore check-samplesheet` but the existence of the BAM and index files:
    // inside a container only the samplesheet's own folder is mounted, so the workflow checks
    // them where they are visible. Relative paths resolve against the samplesheet's real folder.
    """
    bamstore check-samplesheet \\
        ${samplesheet} \\
        --out samplesheet.valid.csv \\
        --no-check-files \\
        ${cohort_arg} \\
        ${args}
    """

    stub:
    // the check is cheap and its output drives every later task: run it for real
    def cohort_arg = cohort ? "--new-samples-for ${cohort}" : ''
    """
    bamstore check-samplesheet ${samplesheet} --out samplesheet.valid.csv --no-check-files ${cohort_arg}
    """
}
