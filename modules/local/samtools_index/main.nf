process SAMTOOLS_INDEX {
    tag "${meta.id}"
    label 'process_single'

    conda "${projectDir}/containers/environment.yml"
    container "ghcr.io/bamstore/bamstore:0.1.0"

    input:
    tuple val(meta), path(bam)

    output:
    tuple val(meta), path("*.{bai,csi}"), emit: index
    path "versions.yml"                 , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    samtools index -@ ${task.cpus} ${args} ${bam}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        samtools: \$(samtools --version | sed '1!d; s/^samtools //')
    END_VERSIONS
    """

    stub:
    """
    touch ${bam}.bai

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        samtools: \$(samtools --version | sed '1!d; s/^samtools //')
    END_VERSIONS
    """
}
