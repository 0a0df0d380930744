process BAMSTORE_EXTRACT {
    tag "${meta.id}"
    label 'process_low'

    conda "${projectDir}/containers/environment.yml"
    container "ghcr.io/bamstore/bamstore:0.1.0"

    input:
    tuple val(meta), path(bam), path(bai)
    path chromsizes

    output:
    tuple val(meta), path("${prefix}.zarr", type: 'dir'), emit: zarr
    path "versions.yml"                                 , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def index_arg = bai ? "--index ${bai}" : ''
    def chromsizes_arg = chromsizes ? "--chromsizes ${chromsizes}" : ''
    """
    bamstore extract \\
        --bam ${bam} \\
        ${index_arg} \\
        --sample ${meta.id} \\
        --out ${prefix}.zarr \\
        ${chromsizes_arg} \\
        --threads ${task.cpus} \\
        --tmp-dir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bamstore: \$(bamstore --version | sed 's/^bamstore, version //')
        python: \$(python3 --version | sed 's/^Python //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.zarr
    echo '{"zarr_format": 3, "node_type": "group", "attributes": {}}' > ${prefix}.zarr/zarr.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bamstore: \$(bamstore --version | sed 's/^bamstore, version //')
        python: \$(python3 --version | sed 's/^Python //')
    END_VERSIONS
    """
}
