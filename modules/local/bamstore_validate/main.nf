process BAMSTORE_VALIDATE {
    tag "${meta.id}"
    label 'process_single'

    container "bamstore:0.1.0"

    input:
    tuple val(meta), path(store)
    val code_digest  // the bamstore package's digest (task hash)

    output:
    tuple val(meta), path("${prefix}.validate.json"), emit: json
    tuple val("${task.process}"), val('bamstore'), eval("bamstore --version | sed 's/^bamstore, version //'"), emit: versions_bamstore, topic: versions
    tuple val("${task.process}"), val('bamstore_code'), val(code_digest), emit: versions_bamstore_code, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    // exits 2 (and fails the run) if the store is not sound; the JSON lists the problems
    """
    bamstore validate ${store} --json --threads ${task.cpus} ${args} > ${prefix}.validate.json
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo '{"ok": true, "stub": true}' > ${prefix}.validate.json
    """
}
