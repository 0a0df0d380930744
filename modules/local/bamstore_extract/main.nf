process BAMSTORE_EXTRACT {
    tag "${meta.id}"
    label 'process_low'

    container "bamstore:0.1.0"

    input:
    // meta: [id, strandedness, scale_factor]; index: [] to build one; bam_path: the BAM's path as the
    // samplesheet gives it, recorded in the store (the task reads its staged copy)
    tuple val(meta), path(bam), path(index), val(bam_path)
    path chromsizes   // [] for none
    path fasta        // [] for none (CRAM needs it unless embedded)
    path fasta_fai    // [] for none (htslib indexes the FASTA itself)
    val settings      // map: the extraction parameters, validated (extractionSettings())
    val code_digest   // the bamstore package's digest (task hash)

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
    def quote = { value -> "'" + value.toString().replace("'", "'\\''") + "'" }
    // Each setting as the `bamstore extract` option of its name (min_mapq 5: --min-mapq '5'); a
    // true boolean as the bare flag; false and unset (null) left out, which is extract's default
    // (tests/test_schemas.py checks that every boolean option defaults to false)
    def settings_args = settings
        .findAll { _name, value -> value != null && value != false }
        .collect { name, value -> "--${name.replace('_', '-')}" + (value == true ? '' : " ${quote.call(value)}") }
        .join(' ')
    def index_arg = index ? "--index ${index}" : ''
    def strand_arg = meta.strandedness ? "--stranded ${meta.strandedness}" : ''
    def factor_arg = meta.scale_factor ? "--scale-factor ${meta.scale_factor}" : ''
    def chromsizes_arg = chromsizes ? "--chromsizes ${chromsizes}" : ''
    def reference_arg = fasta ? "--reference ${fasta}" : ''
    // Without an index, extract builds one in a scratch folder of the task directory (CSI when
    // a contig is longer than 2^29 bases, which BAI cannot address).
    """
    bamstore extract \\
        --bam ${bam} \\
        --source-path ${quote.call(bam_path)} \\
        ${index_arg} \\
        --sample ${meta.id} \\
        ${strand_arg} \\
        ${factor_arg} \\
        --out ${prefix}.zarr \\
        ${settings_args} \\
        ${chromsizes_arg} \\
        ${reference_arg} \\
        --threads ${task.cpus} \\
        --tmp-dir . \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p ${prefix}.zarr
    echo '{"zarr_format": 3, "node_type": "group", "attributes": {}}' > ${prefix}.zarr/zarr.json
    """
}
