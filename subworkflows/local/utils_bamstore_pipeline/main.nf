//
// The start and the end of a bamstore run: parameters (validation, help, summary), the checked
// samplesheet's rows, the package digest that enters every task hash, the completion message.
// Nothing here re-implements a bamstore rule: the samplesheet rules live in
// bamstore/samplesheet.py; the parameter types, ranges and choices in nextflow_schema.json.
//

/*
========================================================================================
    PARAMETERS: nextflow_schema.json is the typed declaration
========================================================================================
*/

//
// Every parameter of nextflow_schema.json: name -> its property, plus `group` (its group's
// title), `section` (the group's name in $defs) and `required`
//
def schemaParameters(schemaPath) {
    def schema = new groovy.json.JsonSlurper().parseText(file(schemaPath).text)
    def specs = [:]
    schema['$defs'].each { groupName, group ->
        def required = group.required ?: []
        group.properties.each { name, spec ->
            specs[name] = spec + [group: group.title, section: groupName, required: required.contains(name)]
        }
    }
    return specs
}

//
// The parameters as the schema types them, or an error listing every problem, one line per
// parameter, before any task starts. Values given on the command line arrive as Nextflow parsed
// them ("false" -> false, "20" -> 20) or as strings (NXF_DISABLE_PARAMS_TYPE_DETECTION, newer
// Nextflow, params files): both are accepted and converted to the declared type.
//
def validateParameters(given, schemaPath) {
    def specs = schemaParameters(schemaPath)
    def problems = []
    def unknown = given.keySet().findAll { name -> !specs.containsKey(name) && !(name in profileParameters()) }
    unknown.sort().each { name ->
        def hint = closestName(name, specs.keySet())
        problems << "--${name}: unknown parameter" + (hint ? " (did you mean --${hint}?)" : '')
    }
    def typed = [:]
    specs.each { name, spec ->
        def result = typedValue(name, given[name], spec)
        if (result.problem) {
            problems << "--${name}: ${result.problem}"
        }
        typed[name] = result.value
    }
    problems += slurmProfileProblems(given, typed)
    if (problems) {
        error("Invalid parameters (run with --help to list them):\n  " + problems.join('\n  '))
    }
    return typed
}

def typedValue(name, value, spec) {
    if (value == null || value == '') {
        return spec.required ? [problem: "required: ${spec.description}"] : [value: null]
    }
    // a flag without a value arrives as true; `--slurm_options --qos=long` also makes Nextflow
    // read --qos=long as a parameter of its own (reported as unknown)
    if (spec.type == 'string' && value == true) {
        return [problem: "needs a value: write --${name}='${spec.examples ? spec.examples[0] : '...'}'"]
    }
    def converted = convertType(value, spec.type)
    if (converted.problem) {
        return converted
    }
    def typed = converted.value
    if (spec['enum'] && !spec['enum'].contains(typed)) {
        return [problem: "${shown(typed)} is not one of: ${spec['enum'].join(', ')}"]
    }
    if (spec.minimum != null && typed < spec.minimum) {
        return [problem: "${typed} is below the minimum, ${spec.minimum}"]
    }
    if (spec.maximum != null && typed > spec.maximum) {
        return [problem: "${typed} is above the maximum, ${spec.maximum}"]
    }
    if (spec.pattern && !java.util.regex.Pattern.compile(spec.pattern).matcher(typed.toString()).find()) {
        return [problem: "${shown(typed)}: ${spec.errorMessage ?: "does not match ${spec.pattern}"}"]
    }
    if (spec.format == 'file-path' && spec.exists && !file(typed).isFile()) {
        return [problem: "file ${typed} does not exist"]
    }
    if (spec.format == 'directory-path' && spec.exists && !file(typed).isDirectory()) {
        return [problem: "directory ${typed} does not exist"]
    }
    return [value: typed]
}

def convertType(value, type) {
    if (type == 'boolean') {
        if (value instanceof Boolean) {
            return [value: value]
        }
        def text = value.toString().toLowerCase()
        return text in ['true', 'false'] ? [value: text == 'true'] : [problem: "must be true or false, not ${shown(value)}"]
    }
    if (type == 'integer') {
        if (value instanceof Integer || value instanceof Long || value instanceof BigInteger) {
            return [value: value as long]
        }
        def text = value.toString().trim()
        return text ==~ /[+-]?\d{1,18}/ ? [value: text as long] : [problem: "must be a whole number, not ${shown(value)}"]
    }
    if (type == 'number') {
        if (value instanceof Number) {
            return [value: value]
        }
        def text = value.toString().trim()
        return text.isBigDecimal() ? [value: text as BigDecimal] : [problem: "must be a number, not ${shown(value)}"]
    }
    return [value: value.toString()]
}

/*
========================================================================================
    THE SLURM PROFILE (conf/slurm.config)
========================================================================================
*/

//
// Parameters a profile sets for the pipeline's own checks and the resource caps, not for users:
// conf/slurm.config records the slurm_array_size it built its job arrays and queue size from,
// and the partition node it read the caps from
//
def profileParameters() {
    return ['slurm_profile_array_size', 'slurm_profile_node']
}

//
// The job arrays are built, and the partition's node read, when Nextflow reads the profile,
// before any -c config: a slurm_array_size or slurm_queue set in a -c config arrives too late,
// so the run is refused rather than run with other arrays, or caps of another partition, than
// asked for
//
def slurmProfileProblems(given, typed) {
    // containsKey: reading a param that no profile set would log a warning on every other run
    def applied = given.containsKey('slurm_profile_array_size') ? given.slurm_profile_array_size : null
    def wanted = typed.slurm_array_size
    def problems = []
    if (applied != null && wanted != null && (applied as long) != wanted) {
        problems << "--slurm_array_size: ${wanted} was set after the slurm profile built its job arrays from ${applied} (a -c config is read after the profiles): give --slurm_array_size ${wanted} on the command line or in -params-file"
    }
    def node = given.containsKey('slurm_profile_node') ? given.slurm_profile_node : null
    def capsGiven = typed.max_cpus != null && typed.max_memory != null && typed.max_time != null
    if (node && typed.slurm_queue && typed.slurm_queue != node.partition && !capsGiven) {
        problems << "--slurm_queue: ${typed.slurm_queue} was set after the slurm profile read the resource caps from partition ${node.partition} (a -c config is read after the profiles): give --slurm_queue ${typed.slurm_queue} on the command line or in -params-file, or give --max_cpus, --max_memory and --max_time"
    }
    return problems
}

def shown(value) {
    return value instanceof CharSequence ? "'${value}'" : value.toString()
}

//
// The declared name closest to a misspelt one: the same letters in another case or with
// - and _ (Nextflow turns --count-deletions into countDeletions), or at most 2 edits away
//
def closestName(name, names) {
    def same = names.find { candidate -> normalName(candidate) == normalName(name) }
    if (same) {
        return same
    }
    def best = names.collect { candidate -> [candidate, editDistance(name, candidate)] }.min { pair -> pair[1] }
    return best && best[1] <= 2 ? best[0] : null
}

def normalName(text) {
    return text.toLowerCase().replaceAll(/[-_]/, '')
}

def editDistance(a, b) {
    // Levenshtein, one row at a time
    def last = (1..a.length()).inject((0..b.length()).toList()) { previous, i ->
        (1..b.length()).inject([i]) { current, j ->
            def cost = a[i - 1] == b[j - 1] ? 0 : 1
            current + [[previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost].min()]
        }
    }
    return last[b.length()]
}

//
// The options every sample is extracted with: the schema's extraction parameters but the files
// (chromsizes, fasta: staged as path inputs). BAMSTORE_EXTRACT passes each one as the `bamstore
// extract` option of the same name, so a new extraction option is a parameter in
// nextflow_schema.json and nextflow.config, and nothing else.
//
def extractionSettings(typed, schemaPath) {
    def specs = schemaParameters(schemaPath)
    def names = specs.findAll { _name, spec -> spec.section == 'extraction_options' && spec.format != 'file-path' }.keySet()
    return names.collectEntries { name -> [name, typed[name]] }
}

//
// --help: every parameter with its type, default and description, by group
//
def helpMessage(schemaPath) {
    def specs = schemaParameters(schemaPath)
    def lines = [
        "${workflow.manifest.name} ${workflow.manifest.version}: ${workflow.manifest.description}",
        '',
        'Usage:',
        '  nextflow run <pipeline> -profile <docker|podman|singularity|apptainer|conda> --input samplesheet.csv --outdir <OUTDIR>',
    ]
    def width = specs.keySet().collect { name -> name.length() }.max() + 2
    specs.groupBy { _name, spec -> spec.group }.each { group, members ->
        lines << ''
        lines << "${group}:"
        members.each { name, spec ->
            def type = "[${spec.type}]".padRight(10)
            def extra = spec.required ? ' (required)' : (spec['default'] != null ? " (default: ${spec['default']})" : '')
            def choices = spec['enum'] ? " One of: ${spec['enum'].join(', ')}." : ''
            lines << "  --${name.padRight(width)}${type}${spec.description}${choices}${extra}"
        }
    }
    lines << ''
    lines << 'Every parameter is checked against nextflow_schema.json before any task starts; docs/usage.md has the details.'
    return lines.join('\n')
}

//
// The start of a run: the parameters that differ from their defaults, and where things run
//
def paramsSummary(typed, schemaPath) {
    def specs = schemaParameters(schemaPath)
    def changed = typed.findAll { name, value -> name != 'trace_report_suffix' && value != specs[name]['default'] }
    def width = (changed.keySet().collect { name -> name.length() } + [12]).max() + 4
    def lines = ["${workflow.manifest.name} ${workflow.manifest.version}", 'Parameters that differ from the defaults:']
    changed.each { name, value -> lines << "  ${('--' + name).padRight(width)}${value}" }
    lines << "  ${'run name'.padRight(width)}${workflow.runName}"
    lines << "  ${'profile'.padRight(width)}${workflow.profile}"
    lines << "  ${'container'.padRight(width)}${workflow.containerEngine ?: 'none (tools from PATH)'}"
    lines << "  ${'launch dir'.padRight(width)}${workflow.launchDir}"
    lines << "  ${'work dir'.padRight(width)}${workflow.workDir}"
    return lines.join('\n')
}

//
// pipeline_info/params_<suffix>.json: every parameter, typed
//
def dumpParametersToJSON(outdir, suffix, typed) {
    def target = file("${outdir}/pipeline_info/params_${suffix}.json")
    target.parent.mkdirs()
    target.text = groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(typed))
}

/*
========================================================================================
    THE CODE THE TASKS RUN
========================================================================================
*/

//
// SHA-256 (16 hex digits) of the bamstore package's source as this pipeline ships it: every
// bamstore task takes it as an input, so a change to the package re-runs the tasks on -resume.
// Nextflow's task hash covers the script, the inputs and the container's name, but not the
// code behind a command: neither the package of the checkout (local and conda runs) nor an
// image rebuilt under the same tag. The image is built from this same source (make image), so
// the digest follows it too; pin images by digest when they come from elsewhere.
//
def packageDigest(root) {
    def sources = []
    java.nio.file.Files.walk(root.resolve('bamstore')).withCloseable { paths ->
        paths.forEach { path ->
            if (path.toString() ==~ /.*\.(py|pyx|pxd)$/ && !path.toString().contains('__pycache__')) {
                sources << path
            }
        }
    }
    sources += ['bin/bamstore', 'pyproject.toml', 'setup.py'].collect { name -> root.resolve(name) }
    def digest = java.security.MessageDigest.getInstance('SHA-256')
    sources.collect { path -> [root.relativize(path).toString(), path] }.sort { pair -> pair[0] }.each { pair ->
        digest.update(pair[0].getBytes('UTF-8'))
        digest.update(pair[1].bytes)
    }
    return digest.digest().encodeHex().toString().take(16)
}

/*
========================================================================================
    THE CHECKED SAMPLESHEET
========================================================================================
*/

//
// The rows of the checked samplesheet (written by `bamstore check-samplesheet --out`), in
// order. Its rules were applied by that task; the one check left is the existence of the BAM
// and index files, made here where they are visible (a container sees only its inputs).
//
def samplesFromSheet(csv, samplesheet) {
    def rows = csv.splitCsv(header: true, quote: '"')
    def problems = []
    def samples = []
    rows.eachWithIndex { row, i ->
        ['bam', 'bai'].each { column ->
            if (row[column] && !file(row[column]).isFile()) {
                problems << "sample ${row.sample}: ${column} file ${row[column]} does not exist; fix: check the path (relative paths are resolved against the samplesheet's folder)"
            }
        }
        samples << [
            meta: [id: row.sample, strandedness: row.strandedness ?: '', scale_factor: row.scale_factor ?: ''],
            bam: file(row.bam),
            bam_path: row.bam,
            index: row.bai ? file(row.bai) : [],
            number: i + 1,
        ]
    }
    if (problems) {
        error("${samplesheet}: ${problems.size()} problem(s) in the samplesheet:\n  " + problems.join('\n  '))
    }
    return samples
}

/*
========================================================================================
    THE END OF A RUN
========================================================================================
*/

def completionSummary(outdir, storeName) {
    if (workflow.success) {
        log.info("-[${workflow.manifest.name}]- Pipeline completed successfully: ${outdir}/${storeName}.zarr")
    }
    else {
        log.error("-[${workflow.manifest.name}]- Pipeline completed with errors. Fix the cause (the failed task's error above) and re-run with -resume.")
    }
}
