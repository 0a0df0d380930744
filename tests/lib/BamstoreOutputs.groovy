import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import java.nio.file.Path
import java.nio.file.Paths

/**
 * What the nf-test tests read of bamstore's outputs. For snapshots: their content without the
 * paths and times of the machine or the checkout that produced them, so that a snapshot
 * matches on any clone and on every run.
 */
class BamstoreOutputs {

    /**
     * Values as the lines of their pretty-printed JSON, the form every snapshot here takes:
     * nf-test replaces any snapshotted value that names an existing path, relative to the
     * project's root, by that file's or folder's digests, so a value such as the string
     * 'bamstore' (a store's format, a process's tool) would become the digests of the package.
     */
    static List<String> lines(Object... values) {
        return JsonOutput.prettyPrint(JsonOutput.toJson(values as List)).readLines()
    }

    /**
     * A store's root attributes (zarr.json): contigs, samples, settings, library sizes, array
     * sums and digests, metadata; of each sample's source file only its size and header digest
     * (its path is the checkout's, its mtime the clone's).
     */
    static Map store(Object store) {
        Map attrs = rootAttributes(store)
        attrs.bamstore?.samples?.each { String _name, Map record ->
            record.source = record.source.subMap(['size', 'header_md5'])
        }
        return attrs
    }

    /** sample -> the source path its record names. */
    static Map sourcePaths(Object store) {
        return rootAttributes(store).bamstore.samples.collectEntries { String name, Map record -> [name, record.source.path] }
    }

    /**
     * A software-versions YAML without the package digest (it changes with every change to the
     * bamstore package) and Python's version (the machine's).
     */
    static List<String> versions(Object yaml) {
        return asPath(yaml).readLines().findAll { String line -> !(line.trim() ==~ /(bamstore_code|python): .*/) }
    }

    /** Every file under a folder, relative to it, sorted. */
    static List<String> files(Object folder) {
        Path root = asPath(folder)
        List<String> names = []
        root.toFile().eachFileRecurse(groovy.io.FileType.FILES) { File file -> names << root.relativize(file.toPath()).toString() }
        return names.sort()
    }

    /** The rows of a run's execution trace (<outdir>/pipeline_info/execution_trace_<suffix>.txt). */
    static List<Map> trace(Object outdir) {
        List<Path> traces = asPath(outdir).resolve('pipeline_info').toFile().listFiles()
            .findAll { File file -> file.name ==~ /execution_trace_.*\.txt/ }*.toPath()
        assert traces.size() == 1 : "one execution trace in ${outdir}/pipeline_info, not ${traces}"
        List<String> lines = traces[0].readLines()
        List<String> header = lines[0].split('\t') as List
        return lines.drop(1).collect { String line -> [header, line.split('\t', -1) as List].transpose().collectEntries() }
    }

    /** The parameters a run recorded (<outdir>/pipeline_info/params_<suffix>.json). */
    static Map params(Object outdir) {
        List<File> files = asPath(outdir).resolve('pipeline_info').toFile().listFiles().findAll { File file -> file.name ==~ /params_.*\.json/ }
        assert files.size() == 1 : "one params file in ${outdir}/pipeline_info, not ${files}"
        return new JsonSlurper().parse(files[0]) as Map
    }

    /** The files of <outdir>/pipeline_info, with the run's suffix (its start time) as <suffix>. */
    static List<String> pipelineInfo(Object outdir) {
        String suffix = params(outdir).trace_report_suffix
        return files(asPath(outdir).resolve('pipeline_info')).collect { String name -> name.replace(suffix, '<suffix>') }
    }

    /** Bytes of a memory amount as Nextflow writes it ("12 GB", "1.5 GB", "512 MB"). */
    static long bytes(String memory) {
        def (String amount, String unit) = memory.tokenize(' ')
        int power = ['B', 'KB', 'MB', 'GB', 'TB'].indexOf(unit)
        assert power >= 0 : "not a memory amount: ${memory}"
        return Math.round((amount as BigDecimal) * 1024**power)
    }

    /** What the run logged (-quiet, as nf-test runs Nextflow, keeps it off the console). */
    static String log(Object metaDir) {
        return asPath(metaDir).resolve('nextflow.log').text
    }

    private static Map rootAttributes(Object store) {
        return new JsonSlurper().parse(asPath(store).resolve('zarr.json').toFile()).attributes as Map
    }

    private static Path asPath(Object path) {
        return path instanceof Path ? path : Paths.get(path.toString())
    }
}
