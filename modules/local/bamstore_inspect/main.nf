process BAMSTORE_INSPECT {
    tag "${meta.id}"
    label 'process_single'

    conda "${projectDir}/containers/environment.yml"
    container "ghcr.io/bamstore/bamstore:0.1.0"

    input:
    tuple val(meta), path(store)

    output:
    tuple val(meta), path("${prefix}.inspect.json") , emit: json
    tuple val(meta), path("${prefix}.validate.json"), emit: validation
    path "versions.yml"                             , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    bamstore inspect ${store} --json > ${prefix}.inspect.json
    bamstore validate ${store} --json --threads ${task.cpus} ${args} > ${prefix}.validate.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bamstore: \$(bamstore --version | sed 's/^bamstore, version //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    echo '{}' > ${prefix}.inspect.json
    echo '{"ok": true}' > ${prefix}.validate.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bamstore: \$(bamstore --version | sed 's/^bamstore, version //')
    END_VERSIONS
    """
}
