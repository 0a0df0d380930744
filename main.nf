#!/usr/bin/env nextflow
/*
========================================================================================
    bamstore: many BAM files -> one Zarr store of per-base coverage (QuantNado BamStore layout)
========================================================================================
    Usage: nextflow run . -profile docker --input samplesheet.csv --outdir results
    Docs:  docs/usage.md, docs/output.md
----------------------------------------------------------------------------------------
*/

include { BAMSTORE                } from './workflows/bamstore'
include { PIPELINE_INITIALISATION } from './subworkflows/local/utils_bamstore_pipeline'
include { PIPELINE_COMPLETION     } from './subworkflows/local/utils_bamstore_pipeline'

workflow {

    main:
    //
    // Parameters, samplesheet -> channel of [ meta, bam, bai ]
    //
    PIPELINE_INITIALISATION(
        params.version,
        params.validate_params,
        params.input,
        params.outdir,
        params,
        params.trace_report_suffix,
    )

    //
    // Index -> extract per sample -> merge -> inspect
    //
    BAMSTORE(
        PIPELINE_INITIALISATION.out.samplesheet,
        PIPELINE_INITIALISATION.out.input_file,
        params.chromsizes ? file(params.chromsizes, checkIfExists: true) : [],
        params.store_name,
    )

    //
    // pipeline_info/bamstore_software_versions.yml
    //
    BAMSTORE.out.versions
        .map { versions -> versions.text }
        .unique()
        .collectFile(
            storeDir: "${params.outdir}/pipeline_info",
            name: 'bamstore_software_versions.yml',
            sort: true,
            newLine: true,
        )

    //
    // Completion summary
    //
    PIPELINE_COMPLETION(
        params.outdir,
        params.store_name,
    )
}
