//
// Start and end of a bamstore run: parameters, samplesheet, summaries.
//

include { paramsSummaryLog   } from 'plugin/nf-schema'
include { samplesheetToList  } from 'plugin/nf-schema'
include { validateParameters } from 'plugin/nf-schema'

/*
========================================================================================
    SUBWORKFLOW: initialisation
========================================================================================
*/

workflow PIPELINE_INITIALISATION {

    take:
    version          // boolean: print the version and exit
    validate_params  // boolean: validate the parameters against nextflow_schema.json
    input            // string: the samplesheet (--input)
    outdir           // string: --outdir
    params_json      // map: every parameter, written to pipeline_info/params_<suffix>.json
    report_suffix    // string: suffix of the pipeline_info files

    main:

    //
    // --version (--help, --help_full and --show_hidden are answered by nf-schema before this)
    //
    if (version) {
        log.info("${workflow.manifest.name} ${workflowVersion()}")
        System.exit(0)
    }

    //
    // Parameters: summary of those that differ from the defaults, then validation
    //
    log.info(paramsSummaryLog(workflow))
    if (validate_params) {
        validateParameters()
    }
    dumpParametersToJSON(outdir, report_suffix, params_json)

    //
    // Samplesheet: the checks nf-schema cannot express (separator, header, field counts) and
    // relative paths (resolved against the samplesheet's folder, as `bamstore check-samplesheet`
    // does), then nf-schema against assets/schema_input.json
    //
    def sheet = file(input, checkIfExists: true)
    def prepared = prepareSamplesheet(sheet)
    def rows = samplesheetToList(prepared.path, "${projectDir}/assets/schema_input.json")
    checkSampleNames(rows, prepared.samples)

    ch_samplesheet = channel.fromList(rows)
        .map { meta, bam, bai ->
            [[id: meta.id.toString(), strandedness: meta.strandedness ?: ''], bam, bai ?: []]
        }

    emit:
    samplesheet = ch_samplesheet  // channel: [ val(meta), path(bam), path(bai) or [] ]
    input_file  = channel.value(sheet)  // path: the samplesheet as given (metadata for the merge)
}

/*
========================================================================================
    SUBWORKFLOW: completion
========================================================================================
*/

workflow PIPELINE_COMPLETION {

    take:
    outdir      // string: --outdir
    store_name  // string: --store_name

    main:
    workflow.onComplete {
        completionSummary(outdir, store_name)
    }

    workflow.onError {
        log.error("Pipeline failed. Re-run with -resume once the cause is fixed; see docs/usage.md (Troubleshooting).")
    }
}

/*
========================================================================================
    FUNCTIONS
========================================================================================
*/

//
// "v0.1.0" (with the commit when run from a git checkout)
//
def workflowVersion() {
    def version = workflow.manifest.version ?: ''
    def versionString = version ? (version.toString().startsWith('v') ? version : "v${version}") : ''
    if (workflow.commitId) {
        versionString += "-g${workflow.commitId.substring(0, 7)}"
    }
    return versionString
}

//
// pipeline_info/params_<suffix>.json
//
def dumpParametersToJSON(outdir, suffix, paramsMap) {
    if (outdir == null) {
        return
    }
    def target = file("${outdir}/pipeline_info/params_${suffix}.json")
    target.parent.mkdirs()
    target.text = groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(paramsMap))
}

//
// The samplesheet rules of `bamstore check-samplesheet` (bamstore/samplesheet.py) that are not
// JSON Schema rules: the file extension names the separator, the header names every column
// once, every row has as many fields as the header. Relative bam/bai paths are resolved
// against the samplesheet's folder (nf-schema would resolve them against the launch folder), so
// nf-schema validates a normalised copy (its location is logged).
// Returns [path: <sheet to validate>, samples: <sample names as written>].
//
def prepareSamplesheet(sheet) {
    def separators = [csv: ',', tsv: '\t']
    def extension = sheet.extension.toLowerCase()
    if (!separators.containsKey(extension)) {
        error("Please check input samplesheet -> ${sheet}: must end in .csv or .tsv, not '.${extension}'")
    }
    def separator = separators[extension]
    def other = separator == ',' ? '\t' : ','
    def firstLine = (sheet.withReader { reader -> reader.readLine() } ?: '').replaceFirst('^\uFEFF', '')
    if (!firstLine.trim()) {
        error("Please check input samplesheet -> ${sheet}: empty (no header line); start it with a header such as: sample,bam,strandedness")
    }
    if (!firstLine.contains(separator) && firstLine.contains(other)) {
        error("Please check input samplesheet -> ${sheet}: named .${extension} but its header is separated by ${other == '\t' ? 'tabs' : 'commas'}")
    }

    def lines = sheet.splitCsv(sep: separator, quote: '"')
    def header = lines[0].collect { name -> name.toString().replaceFirst('^\uFEFF', '').trim() }
    def problems = []
    def missing = ['sample', 'bam'].findAll { column -> !header.contains(column) }
    if (missing) {
        problems << "header lacks required column(s) ${missing.join(', ')} (found: ${header.join(', ')})"
    }
    if (header.any { name -> !name }) {
        problems << 'header has an empty column name (name every column, or remove trailing separators)'
    }
    def repeated = header.findAll { name -> name && header.count(name) > 1 }.unique()
    if (repeated) {
        problems << "header repeats column(s) ${repeated.join(', ')}"
    }

    def entries = []
    lines.drop(1).each { fields ->
        if (fields.every { value -> !value.toString().trim() }) {
            return
        }
        entries << fields
        if (fields.size() != header.size()) {
            problems << "entry ${entries.size()} has ${fields.size()} fields but the header has ${header.size()} (a trailing separator counts as a field)"
        }
    }
    if (!entries && !problems) {
        problems << 'has a header but no samples'
    }
    if (problems) {
        error("Please check input samplesheet -> ${sheet}:\n  * " + problems.join('\n  * '))
    }

    def samples = entries.collect { fields -> fields[header.indexOf('sample')].toString().trim() }
    def base = sheet.parent
    def rows = entries.collect { fields ->
        def values = fields.collect { value -> value.toString().trim() }
        ['bam', 'bai'].each { column ->
            def i = header.indexOf(column)
            def value = i >= 0 ? values[i] : ''
            if (value && isRelativePath(value)) {
                def resolved = value.startsWith('~/')
                    ? file(System.getProperty('user.home')).resolve(value.substring(2))
                    : base.resolve(value)
                values[i] = resolved.fileSystem == java.nio.file.FileSystems.default ? resolved.toString() : resolved.toUriString()
            }
        }
        values
    }
    // The copy nf-schema validates: same columns and separator, values trimmed, blank rows
    // dropped, relative paths made absolute. Entry N of its messages is the N-th sample.
    def copy = file("${workflow.workDir}/bamstore-samplesheet/${workflow.sessionId}/${sheet.name}")
    copy.parent.mkdirs()
    copy.text = ([header] + rows).collect { values -> values.collect { value -> csvField(value, separator) }.join(separator) }.join('\n') + '\n'
    log.info("Samplesheet ${sheet}: ${rows.size()} samples (relative paths resolved against ${base}); validating ${copy}")
    return [path: copy, samples: samples]
}

def isRelativePath(value) {
    return !(value.startsWith('/') || value ==~ /^[A-Za-z][A-Za-z0-9+.-]*:\/\/.*/)
}

def csvField(value, separator) {
    def text = value.toString()
    if (text.contains(separator) || text.contains('"') || text.contains('\n')) {
        return '"' + text.replace('"', '""') + '"'
    }
    return text
}

//
// nf-schema reads CSV values that look like numbers as numbers: "10E8" becomes 1.0E+9. A sample
// name that did not survive that unchanged is refused here rather than renamed.
//
def checkSampleNames(rows, written) {
    def names = written as Set
    def changed = rows.collect { row -> row[0].id.toString() }.findAll { name -> !names.contains(name) }
    if (changed) {
        error("Please check input samplesheet -> sample name(s) read as numbers and changed to ${changed.join(', ')}; start such names with a letter (e.g. S${changed[0]})")
    }
}

//
// The last lines of a run
//
def completionSummary(outdir, storeName) {
    if (workflow.success) {
        if (workflow.stats.ignoredCount == 0) {
            log.info("-[${workflow.manifest.name}]- Pipeline completed successfully: ${outdir}/${storeName}.zarr")
        }
        else {
            log.warn("-[${workflow.manifest.name}]- Pipeline completed successfully, but with errored process(es)")
        }
    }
    else {
        log.error("-[${workflow.manifest.name}]- Pipeline completed with errors")
    }
}
