/*
========================================================================================
    BAMSTORE: samplesheet -> one store per sample -> one consolidated Zarr store
========================================================================================
*/

include { BAMSTORE_CHECKSAMPLESHEET } from '../modules/local/bamstore_checksamplesheet/main'
include { BAMSTORE_EXTRACT          } from '../modules/local/bamstore_extract/main'
include { BAMSTORE_MERGE            } from '../modules/local/bamstore_merge/main'
include { BAMSTORE_VALIDATE         } from '../modules/local/bamstore_validate/main'
include { BAMSTORE_INSPECT          } from '../modules/local/bamstore_inspect/main'
include { samplesFromSheet          } from '../subworkflows/local/utils_bamstore_pipeline'

workflow BAMSTORE {

    take:
    samplesheet  // path: the samplesheet as given (--input)
    store_name   // string: the store is written as <store_name>.zarr
    settings     // map: the extraction parameters, validated (nextflow_schema.json)
    chromsizes   // path or []: optional name<TAB>length file
    fasta        // path or []: reference FASTA for CRAM input
    fasta_fai    // path or []: its .fai index
    code_digest  // string: digest of the bamstore package the tasks run (part of every task hash)
    append_to    // path or []: an existing store to grow (only the samples it lacks are extracted)

    main:
    //
    // The samplesheet, checked by `bamstore check-samplesheet` with the rules `bamstore build`
    // applies; the workflow reads its normalised copy (absolute paths, samples in row order).
    // With append_to, the copy lists only the samples that store does not hold yet.
    //
    BAMSTORE_CHECKSAMPLESHEET(samplesheet, append_to, code_digest)

    // All rows at once: every BAM and index must exist before the first extraction starts
    ch_rows = BAMSTORE_CHECKSAMPLESHEET.out.csv
        .map { csv -> samplesFromSheet(csv, samplesheet) }

    //
    // One store per sample; its record names the BAM by the samplesheet's path
    //
    ch_samples = ch_rows.flatMap { rows -> rows.collect { row -> [row.meta, row.bam, row.index, row.bam_path] } }
    BAMSTORE_EXTRACT(ch_samples, chromsizes, fasta, fasta_fai, settings, code_digest)

    //
    // One merge of every part, in samplesheet row order: the store's sample axis follows the
    // samplesheet (as `bamstore build`), and the merge's inputs, hence its task hash, are the
    // same on every run whatever order the extractions finish in (-resume). A store to grow
    // comes first: the merge links its files and the new samples follow (it is only read)
    //
    ch_row_of = ch_rows.flatMap { rows -> rows.collect { row -> [row.meta.id, row.number] } }
    ch_parts = BAMSTORE_EXTRACT.out.zarr
        .map { meta, zarr -> [meta.id, zarr] }
        .join(ch_row_of, failOnDuplicate: true, failOnMismatch: true)
        .toSortedList { a, b -> a[2] <=> b[2] }
        .map { parts -> (append_to ? [append_to] : []) + parts.collect { part -> part[1] } }
        // nothing to merge when every extraction failed: the run is ending with their error, and
        // an empty list would add a second, confusing one (MERGE takes one store or more)
        .filter { stores -> !stores.isEmpty() }
        .map { stores -> [[id: store_name], stores] }
    BAMSTORE_MERGE(ch_parts, BAMSTORE_CHECKSAMPLESHEET.out.csv, settings.shard, code_digest)

    //
    // Reports on the store: its structural check and its summary (published under reports/)
    //
    BAMSTORE_VALIDATE(BAMSTORE_MERGE.out.zarr, code_digest)
    BAMSTORE_INSPECT(BAMSTORE_MERGE.out.zarr, code_digest)

    emit:
    store      = BAMSTORE_MERGE.out.zarr      // channel: [ val(meta), path(<store_name>.zarr) ]
    validation = BAMSTORE_VALIDATE.out.json   // channel: [ val(meta), path(<store_name>.validate.json) ]
    summary    = BAMSTORE_INSPECT.out.json    // channel: [ val(meta), path(<store_name>.inspect.json) ]
    // software versions: every process sends [process, tool, version] to the `versions` topic
}
