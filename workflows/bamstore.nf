/*
========================================================================================
    BAMSTORE: BAMs -> per-sample stores -> one consolidated Zarr store
========================================================================================
*/

include { SAMTOOLS_INDEX   } from '../modules/local/samtools_index/main'
include { BAMSTORE_EXTRACT } from '../modules/local/bamstore_extract/main'
include { BAMSTORE_MERGE   } from '../modules/local/bamstore_merge/main'
include { BAMSTORE_INSPECT } from '../modules/local/bamstore_inspect/main'

workflow BAMSTORE {

    take:
    ch_samples     // channel: [ val(meta), path(bam), path(bai) or [] ]; meta: [id, strandedness]
    samplesheet    // channel (value): the samplesheet as given (its other columns become metadata)
    chromsizes     // path or []: optional name<TAB>length file
    store_name     // string: the store is written as <store_name>.zarr

    main:
    ch_versions = channel.empty()

    //
    // Index the BAMs that came without one
    //
    ch_branched = ch_samples.branch { meta, bam, bai ->
        indexed: bai
            return [meta, bam, bai]
        unindexed: true
            return [meta, bam]
    }
    SAMTOOLS_INDEX(ch_branched.unindexed)
    ch_versions = ch_versions.mix(SAMTOOLS_INDEX.out.versions.first())

    ch_bam_bai = ch_branched.indexed.mix(
        ch_branched.unindexed
            .join(SAMTOOLS_INDEX.out.index, failOnDuplicate: true, failOnMismatch: true)
    )

    //
    // One store per sample
    //
    BAMSTORE_EXTRACT(ch_bam_bai, chromsizes)
    ch_versions = ch_versions.mix(BAMSTORE_EXTRACT.out.versions.first())

    //
    // One merge of every part, sorted by sample name so the task hash and the sample axis are
    // the same on every run (-resume), whatever order the extractions finish in
    //
    ch_parts = BAMSTORE_EXTRACT.out.zarr
        .toSortedList { a, b -> a[0].id <=> b[0].id }
        .map { parts -> [[id: store_name, samples: parts.size()], parts.collect { it[1] }] }
    BAMSTORE_MERGE(ch_parts, samplesheet)
    ch_versions = ch_versions.mix(BAMSTORE_MERGE.out.versions)

    //
    // Summary (bamstore inspect --json) and structural check, published under reports/
    //
    BAMSTORE_INSPECT(BAMSTORE_MERGE.out.zarr)
    ch_versions = ch_versions.mix(BAMSTORE_INSPECT.out.versions)

    emit:
    store      = BAMSTORE_MERGE.out.zarr      // channel: [ val(meta), path(<store_name>.zarr) ]
    summary    = BAMSTORE_INSPECT.out.json    // channel: [ val(meta), path(<store_name>.inspect.json) ]
    validation = BAMSTORE_INSPECT.out.validation
    versions   = ch_versions                  // channel: path(versions.yml)
}
