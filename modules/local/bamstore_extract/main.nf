process BAMSTORE_EXTRACT {
    tag "${meta.id}"
    label 'process_low'

    container "bamstore:0.1.0"

    input:
    tuple val(meta), path(bam), path(index)  // meta: [id, strandedness]; index: [] to build one
    path chromsizes                          // [] for none
    path fasta                               // [] for none (CRAM needs it unless embedded)
    path fasta_fai                           // [] for none (htslib indexes the FASTA itself)
    val settings                             // map: the extraction parameters, validated
    val code_digest                          // the bamstore package's digest (task hash)

    output:
    tuple val(meta), path("${prefix}.zarr", type: 'dir'), emit: zarr
    path "versions.yml"                                 , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def index_arg = index ? "--index ${index}" : ''
    def strand_arg = meta.strandedness ? "--stranded ${meta.strandedness}" : ''
    def deletions_arg = settings.count_deletions ? '--count-deletions' : ''
    def extend_arg = settings.extend ? "--extend ${settings.extend}" : ''
    def shift_arg = settings.shift ? "--shift '${settings.shift}'" : ''
    def chromsizes_arg = chromsizes ? "--chromsizes ${chromsizes}" : ''
    def shard_arg = settings.shard ? '--shard' : '--no-shard'
    def reference_arg = fasta ? "--reference ${fasta}" : ''
    // Without an index, extract builds one in a scratch folder of the task directory (CSI when
    // a contig is longer than 2^29 bases, which BAI cannot address).
    """
    bamstore extract \\
        --bam ${bam} \\
        ${index_arg} \\
        --sample ${meta.id} \\
        ${strand_arg} \\
        --out ${prefix}.zarr \\
        --chromosomes '${settings.chromosomes}' \\
        --min-mapq ${settings.min_mapq} \\
        --exclude-flags ${settings.exclude_flags} \\
        ${deletions_arg} \\
        --mode ${settings.mode} \\
        ${extend_arg} \\
        ${shift_arg} \\
        --chunk-len ${settings.chunk_len} \\
        --compression ${settings.compression} \\
        ${shard_arg} \\
        ${chromsizes_arg} \\
        ${reference_arg} \\
        --threads ${task.cpus} \\
        --tmp-dir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        bamstore: \$(bamstore --version | sed 's/^bamstore, version //')
        bamstore_code: ${code_digest}
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
        bamstore_code: ${code_digest}
        python: \$(python3 --version | sed 's/^Python //')
    END_VERSIONS
    """
}
