process BAMSTORE_MERGE {
    tag "${meta.id}"
    label 'process_merge'

    conda "${projectDir}/containers/environment.yml"
    container "ghcr.io/bamstore/bamstore:0.1.0"

    input:
    // parts: per-sample stores in the order they go into the store (the workflow sorts them by
    // sample); staged as parts/1/<name>, parts/2/<name>, ... so equal names cannot collide and
    // the index keeps the order. They are only read: the new store is written beside them.
    tuple val(meta), path(parts, stageAs: 'parts/?/*')
    path samplesheet, stageAs: 'metadata/*'

    output:
    tuple val(meta), path("${prefix}.zarr", type: 'dir'), emit: zarr
    path "versions.yml"                                 , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    # The manifest lists the staged parts in staging order (parts/<n>/<store>, sorted by n), so
    # the command line stays short whatever the number of samples.
    find -L parts -mindepth 2 -maxdepth 2 -name '*.zarr' -type d \\
        | sort -t / -k 2,2n > parts.txt

    bamstore merge \\
        --parts-file parts.txt \\
        --metadata ${samplesheet} \\
        --sample-column sample \\
        --out ${prefix}.zarr \\
        --threads ${task.cpus} \\
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
