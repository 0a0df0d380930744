#!/usr/bin/env bash
# nf-test as `make nf-test` built it (tools/nf-test/build.sh), run with the Nextflow beside it
# (.tools/bin/nextflow, `make nextflow`) first on PATH: the tests run the pinned Nextflow,
# offline (its launcher sets NXF_OFFLINE).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
jar="$here/../nf-test/nf-test.jar"
if [[ ! -f "$jar" ]]; then
    echo "nf-test: $jar is missing; run 'make nf-test' in the bamstore checkout" >&2
    exit 1
fi
export PATH="$here:$PATH"
java=${JAVA_CMD:-${NXF_JAVA_HOME:+$NXF_JAVA_HOME/bin/java}}
# nf-test itself only starts Nextflow processes: a small heap (its own launcher asks for 10 GB)
# shellcheck disable=SC2086  # NFT_JAVA_ARGS is a list of JVM options
exec "${java:-java}" ${NFT_JAVA_ARGS:--Xmx1g} -jar "$jar" "$@"
