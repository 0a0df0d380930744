#!/usr/bin/env bash
# Builds the pipeline's image, localhost/bamstore:<version>, from containers/Dockerfile with podman.
#
#   containers/build-image.sh            (what `make image` runs)
#
# Base image: BASE_IMAGE if set; else the Dockerfile's pinned debian:bookworm-slim digest if it
# is present or can be pulled; else (no registry reachable) a Debian bookworm root made here with
# `debootstrap --variant=minbase`, imported as localhost/debian-base:bookworm and reused from then
# on. The same Dockerfile builds on either; only its BASE_IMAGE argument differs.
#
# Host-specific values are read at run time, never written into the repository: the Debian mirror
# (DEBIAN_MIRROR, else the machine's apt sources) and the CA bundle that pip in the build trusts,
# so it reaches PyPI through whatever TLS setup this machine has (CA_BUNDLE).
#
# podman runs here as root with runc, the cgroupfs manager and no default ulimits: this script
# writes that containers.conf into .tools/podman/ (git-ignored) and exports CONTAINERS_CONF.
# Idempotent: the base image is reused, and podman's layer cache makes an unchanged rebuild quick.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' bamstore/__init__.py)
[ -n "$version" ] || { echo "build-image: no __version__ in bamstore/__init__.py" >&2; exit 1; }
IMAGE=${IMAGE:-localhost/bamstore:$version}
LOCAL_BASE=localhost/debian-base:bookworm
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
STATE=$PWD/.tools/podman

mkdir -p "$STATE"
cat > "$STATE/containers.conf" <<'EOF'
# Written by containers/build-image.sh: podman as root on a host without systemd cgroups.
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF=$STATE/containers.conf

log() { echo "build-image: $*" >&2; }

# The pinned base named by the Dockerfile's `ARG BASE_IMAGE=...` line.
pinned_base() {
    sed -n 's/^ARG BASE_IMAGE=\(.*\)$/\1/p' containers/Dockerfile | head -n 1
}

# "main URI" and "security URI" lines from this machine's apt sources (deb822 or one-line format).
host_debian_uris() {
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        awk 'BEGIN { RS = "" }
             { uri = ""; suites = ""
               n = split($0, line, "\n")
               for (i = 1; i <= n; i++) {
                   if (line[i] ~ /^URIs:/)   { split(line[i], f, " "); uri = f[2] }
                   if (line[i] ~ /^Suites:/) { suites = line[i] }
               }
               if (uri != "") print ((suites ~ /-security/) ? "security " : "main ") uri }' \
            /etc/apt/sources.list.d/debian.sources
    fi
    if [ -f /etc/apt/sources.list ]; then
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                           print (($(i + 1) ~ /-security/) ? "security " : "main ") $i }' \
            /etc/apt/sources.list
    fi
}

make_local_base() {
    local uris mirror security rootfs started
    uris=$(host_debian_uris)
    mirror=${DEBIAN_MIRROR:-$(awk '$1 == "main" { print $2; exit }' <<<"$uris")}
    security=${DEBIAN_SECURITY_MIRROR:-$(awk '$1 == "security" { print $2; exit }' <<<"$uris")}
    if [ -z "$mirror" ]; then
        log "no Debian mirror in /etc/apt/sources.list{,.d/debian.sources}; set DEBIAN_MIRROR"
        exit 1
    fi
    command -v debootstrap >/dev/null || { log "needs debootstrap (apt-get install debootstrap)"; exit 1; }
    rootfs=$(mktemp -d "$STATE/rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" EXIT
    log "no registry: debootstrap --variant=minbase bookworm (mirror from this machine's apt sources)"
    started=$SECONDS
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
        >"$STATE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$STATE/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
    log "debootstrap: $((SECONDS - started)) s"

    # What debian:bookworm-slim has besides minbase: updates and security sources, and dpkg
    # excludes for docs, man pages and translations (copyright files stay).
    {
        echo "deb $mirror bookworm main"
        echo "deb $mirror bookworm-updates main"
        [ -z "$security" ] || echo "deb $security bookworm-security main"
    } >"$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,groff,lintian,linda}/* \
        "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*

    started=$SECONDS
    tar -C "$rootfs" -c . | podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$LOCAL_BASE" >/dev/null
    log "import as $LOCAL_BASE: $((SECONDS - started)) s"
    rm -rf "$rootfs"
    trap - EXIT
}

choose_base() {
    local pinned
    if [ -n "${BASE_IMAGE:-}" ]; then
        echo "$BASE_IMAGE"
        return
    fi
    pinned=$(pinned_base)
    if podman image exists "$pinned" || podman pull --quiet "$pinned" >/dev/null 2>&1; then
        echo "$pinned"
        return
    fi
    if podman image exists "$LOCAL_BASE"; then
        log "reusing $LOCAL_BASE (podman rmi it to make a new one)"
    else
        make_local_base
    fi
    echo "$LOCAL_BASE"
}

base=$(choose_base)
# pip in the build trusts this machine's CA bundle, given as the build secret `pip_cert`: it is
# mounted only into the step that runs pip and stays out of every layer. (A `-v` mount of it
# over /etc/ssl/certs/ca-certificates.crt would break ca-certificates' postinst, "Device or
# resource busy", and leave an empty mount point in the final image.)
ca_args=()
if [ -f "$CA_BUNDLE" ]; then
    ca_args=(--secret "id=pip_cert,src=$CA_BUNDLE")
fi

previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log "podman build $IMAGE on $base"
started=$SECONDS
podman build --isolation chroot --network host "${ca_args[@]}" \
    --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version" \
    -f containers/Dockerfile -t "$IMAGE" . >"$STATE/build.log" 2>&1 \
    || { tail -n 40 "$STATE/build.log" >&2; log "podman build failed (full log: $STATE/build.log)"; exit 1; }
log "podman build: $((SECONDS - started)) s"
# The image this tag named before, if the build replaced it (its cached build layers stay)
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi

podman run --rm --ulimit host --network none "$IMAGE" bamstore --version
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "$IMAGE: $((size / 1000000)) MB"
