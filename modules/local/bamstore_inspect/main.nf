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
    path "versions.yml"                            , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''  // e.g. '--html bamstore.html': library-size chart
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    bamstore inspect ${store} --json ${args} > ${prefix}.inspect.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bamstore: \$(bamstore --version | sed 's/^bamstore, version //')
        bamstore_code: ${code_digest}
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo '{"stub": true}' > ${prefix}.inspect.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bamstore: \$(bamstore --version | sed 's/^bamstore, version //')
        bamstore_code: ${code_digest}
    END_VERSIONS
    """
}
