process BAMSTORE_INSPECT {
    tag "${meta.id}"
    label 'process_single'

    container "bamstore:0.1.0"

    input:
    tuple val(meta), path(store)
    val code_digest  // the bamstore package's digest (task hash)

    output:
    tuple val(meta), path("${prefix}.inspect.json"), emit: json
    tuple val(meta), path("*.html")                , emit: html, optional: true
    tuple val("${task.process}"), val('bamstore'), eval("bamstore --version | sed 's/^bamstore, version //'"), emit: versions_bamstore, topic: versions
    tuple val("${task.process}"), val('bamstore_code'), val(code_digest), emit: versions_bamstore_code, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''  // e.g. '--html bamstore.html': library-size chart
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    bamstore inspect ${store} --json ${args} > ${prefix}.inspect.json
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo '{"stub": true}' > ${prefix}.inspect.json
    """
}
