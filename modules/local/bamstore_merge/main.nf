process BAMSTORE_MERGE {
    tag "${meta.id}"
    label 'process_merge'

    container "bamstore:0.1.0"

    input:
    // parts: the per-sample stores in samplesheet row order; staged as parts/1/<name>,
    // parts/2/<name>, ... so equal names cannot collide. They are only read: the new store is
    // written beside them, its chunk files hard-linked from theirs (scratch = false).
    tuple val(meta), path(parts, arity: '1..*', stageAs: 'parts/?/*')
    path samplesheet, stageAs: 'metadata/*'  // the checked samplesheet: per-sample metadata
    val shard                                // true: shard the store; false: the first part's layout
    val code_digest                          // the bamstore package's digest (task hash)

    output:
    tuple val(meta), path("${prefix}.zarr", type: 'dir'), emit: zarr
    tuple val("${task.process}"), val('bamstore'), eval("bamstore --version | sed 's/^bamstore, version //'"), emit: versions_bamstore, topic: versions
    tuple val("${task.process}"), val('bamstore_code'), val(code_digest), emit: versions_bamstore_code, topic: versions
    tuple val("${task.process}"), val('python'), eval("python3 --version | sed 's/^Python //'"), emit: versions_python, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def shard_arg = shard ? '--shard' : ''
    // The parts file keeps bamstore's command line short whatever the number of samples
    // (printf is a shell builtin: no exec, so no argument-length limit)
    """
    printf '%s\\n' ${parts.join(' ')} > parts.txt

    bamstore merge \\
        --parts-file parts.txt \\
        --metadata ${samplesheet} \\
        --sample-column sample \\
        --out ${prefix}.zarr \\
        --threads ${task.cpus} \\
        ${shard_arg} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.zarr
    echo '{"zarr_format": 3, "node_type": "group", "attributes": {}}' > ${prefix}.zarr/zarr.json
    """
}
