#!/usr/bin/env bash
# Builds nf-test from its source release and installs it into .tools/ (`make nf-test`).
# nf-test is released as a jar on GitHub, which some machines cannot reach, and it is not on
# Maven Central; its build needs only Maven Central. Usage: build.sh SRC SHA256 PREFIX
#   SRC     the source tarball (`git archive` of the release tag): a path, or a URL to download
#   SHA256  its pinned digest: a tarball with another digest is refused
#   PREFIX  where to install: PREFIX/nf-test/nf-test.jar and the launcher PREFIX/bin/nf-test
set -euo pipefail
src=$1 sha256=$2 prefix=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT

case $src in
    http://* | https://*)
        echo "nf-test: downloading $src"
        curl -fsSL --retry 3 -o "$build/src.tar.gz" "$src" ;;
    *)
        cp "$src" "$build/src.tar.gz" ;;
esac
actual=$(sha256sum "$build/src.tar.gz" | cut -d' ' -f1)
if [[ $actual != "$sha256" ]]; then
    echo "nf-test: $src has SHA-256 $actual, not the pinned $sha256; fix: give the release's source tarball (NFTEST_SRC)" >&2
    exit 1
fi

mkdir "$build/src"
tar -xzf "$build/src.tar.gz" -C "$build/src" --strip-components 1
mvn -q -B -f "$build/src/pom.xml" -DskipTests package
install -D -m 644 "$build"/src/target/nf-test.jar "$prefix/nf-test/nf-test.jar"
install -D -m 755 "$here/nf-test.sh" "$prefix/bin/nf-test"
"$prefix/bin/nf-test" version
