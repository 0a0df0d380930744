#!/usr/bin/env nextflow
/*
========================================================================================
    bamstore: many BAM/CRAM files -> one Zarr store of per-base coverage (QuantNado layout)
========================================================================================
    Usage: nextflow run . -profile podman --input samplesheet.csv --outdir results
    Help:  nextflow run . --help          Docs: docs/usage.md, docs/output.md
----------------------------------------------------------------------------------------
*/

include { BAMSTORE             } from './workflows/bamstore'
include { validateParameters   } from './subworkflows/local/utils_bamstore_pipeline'
include { extractionSettings   } from './subworkflows/local/utils_bamstore_pipeline'
include { helpMessage          } from './subworkflows/local/utils_bamstore_pipeline'
include { paramsSummary        } from './subworkflows/local/utils_bamstore_pipeline'
include { dumpParametersToJSON } from './subworkflows/local/utils_bamstore_pipeline'
include { packageDigest        } from './subworkflows/local/utils_bamstore_pipeline'
include { completionSummary    } from './subworkflows/local/utils_bamstore_pipeline'

workflow {

    main:
    def schema = "${projectDir}/nextflow_schema.json"

    if (params.help) {
        log.info(helpMessage(schema))
    }
    else if (params.version) {
        log.info("${workflow.manifest.name} ${workflow.manifest.version}")
    }
    else {
        //
        // Parameters: typed and checked against nextflow_schema.json before any task runs
        //
        def opts = validateParameters(params, schema)
        log.info(paramsSummary(opts, schema))
        dumpParametersToJSON(opts.outdir, opts.trace_report_suffix, opts)

        // The grown store is published beside the one it grows, never over it
        def append_to = opts.append_to ? file(opts.append_to, type: 'dir') : []
        if (append_to && append_to.toAbsolutePath().normalize() == file("${opts.outdir}/${opts.store_name}.zarr").toAbsolutePath().normalize()) {
            error("--append_to ${opts.append_to} is the store this run would publish: give another --store_name or --outdir (the new store replaces nothing)")
        }

        def fasta = opts.fasta ? file(opts.fasta) : []
        def fasta_fai = opts.fasta && file("${opts.fasta}.fai").exists() ? file("${opts.fasta}.fai") : []

        //
        // Samplesheet -> one store per sample -> one merged store -> its reports
        //
        BAMSTORE(
            file(opts.input),
            opts.store_name,
            extractionSettings(opts, schema),
            opts.chromsizes ? file(opts.chromsizes) : [],
            fasta,
            fasta_fai,
            packageDigest(projectDir),
            append_to,
        )

        //
        // pipeline_info/bamstore_software_versions.yml: what every process sent to the
        // `versions` topic ([process, tool, version]), one YAML block per process
        //
        channel.topic('versions')
            .map { process, tool, version -> [process.tokenize(':').last(), "${tool}: ${version}".toString()] }
            .unique()
            .groupTuple()
            .map { process, tools -> "${process}:\n" + tools.sort().collect { tool -> "    ${tool}" }.join('\n') }
            .collectFile(
                storeDir: "${opts.outdir}/pipeline_info",
                name: 'bamstore_software_versions.yml',
                sort: true,
                newLine: true,
            )

        workflow.onComplete {
            completionSummary(opts.outdir, opts.store_name)
        }
    }
}
