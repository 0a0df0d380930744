/*
    A two-step pipeline shaped like bamstore's (one task per sample, then one merge), for testing
    the `slurm` profile (conf/slurm.config) on a real SLURM cluster without the bamstore
    pipeline: its processes carry the names and labels of the real extract and merge, so the
    profile's withName/withLabel settings (job arrays, resources, retry) apply to them.

    Each extract task records where SLURM ran it (job id, array job id and index, the memory it
    was given); params.hold_dir makes one sample's first attempt wait there, so a test can kill
    that job with scancel.
*/

params.samples  = 5
params.outdir   = 'results'
params.hold     = ''      // sample whose first attempt writes its job id to <hold_dir>/<sample>.job and waits
params.hold_dir = ''

process BAMSTORE_EXTRACT {
    tag "${sample}"
    label 'process_low'

    input:
    val sample

    output:
    path "${sample}.txt"

    script:
    def hold = sample == params.hold && task.attempt == 1
    """
    job="\${SLURM_ARRAY_JOB_ID:+\${SLURM_ARRAY_JOB_ID}_\${SLURM_ARRAY_TASK_ID}}"
    echo "${sample} attempt=${task.attempt} job=\${SLURM_JOB_ID:-none} native=\${job:-\${SLURM_JOB_ID:-none}} mem=\${SLURM_MEM_PER_NODE:-none}" > ${sample}.txt
    ${hold ? "echo \"\${job:-\${SLURM_JOB_ID}}\" > ${params.hold_dir}/${sample}.job; sleep 600" : ''}
    """
}

process BAMSTORE_MERGE {
    label 'process_merge'
    publishDir params.outdir, mode: 'copy'

    input:
    path parts

    output:
    path 'merged.txt'

    script:
    """
    cat ${parts} | cut -d ' ' -f 1 | sort > merged.txt
    """
}

workflow {
    samples = channel.of(1..params.samples).map { n -> "s${n}" }
    BAMSTORE_EXTRACT(samples)
    BAMSTORE_MERGE(BAMSTORE_EXTRACT.out.toSortedList())
}
