#!/usr/bin/env bash
# Make PostgreSQL + TimescaleDB (Apache-2 edition) available on Debian 12 or 13,
# with the HyperLogLog and t-digest extensions of the rollups' sketches
# (postgresql-<version>-hll and -tdigest: Debian packages them for both).
#
#   Debian 13 (trixie):   apt-get install postgresql-17 postgresql-17-timescaledb
#   Debian 12 (bookworm): TimescaleDB is not packaged; install postgresql-15 and its
#                         server headers, fetch Debian 13's timescaledb *source*
#                         package (a deb-src-only trixie entry, so no trixie binaries
#                         are ever installed) and build it against PostgreSQL 15.
#
# Idempotent: returns at once when timescaledb.control, hll.control and
# tdigest.control are already installed for the chosen PostgreSQL version. Never creates, drops or restarts a PostgreSQL cluster:
# EventBunker runs its own cluster under its data directory (python/eventbunker/
# cluster.py finds the server's bin dir by itself). If the PostgreSQL server package
# is not installed yet, /etc/postgresql-common/createcluster.d/eventbunker.conf is
# written first so the package does not create and start a default "main" cluster
# (delete that file if you want Debian's usual default cluster for later installs).
#
# Progress goes to stderr; nothing is written to stdout.
#
# Environment:
#   EVENTBUNKER_PG_VERSION      PostgreSQL major version to use (default: 15 on
#                               Debian 12, 17 on Debian 13)
#   EVENTBUNKER_TSDB_BUILD_DIR  build directory for the Debian 12 source build
#                               (default: /var/cache/eventbunker/timescaledb-build)
#   EVENTBUNKER_DEBIAN_MIRROR   mirror for the trixie deb-src entry (default: the
#                               URI of the machine's Debian sources, else
#                               http://deb.debian.org/debian)
set -euo pipefail

log() { printf 'install-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- which Debian, which PostgreSQL ------------------------------------------------
[ -r /etc/os-release ] || die "cannot read /etc/os-release (Debian 12 or 13 required)"
# shellcheck disable=SC1091
. /etc/os-release
codename="${VERSION_CODENAME:-}"
case "${ID:-}:${codename}" in
    debian:bookworm) default_pg=15; mode=source ;;
    debian:trixie)   default_pg=17; mode=package ;;
    *) die "unsupported system '${PRETTY_NAME:-unknown}': Debian 12 (bookworm) or 13 (trixie) required" ;;
esac
pg_version="${EVENTBUNKER_PG_VERSION:-$default_pg}"
pg_bin="/usr/lib/postgresql/${pg_version}/bin"

pg_sharedir() {
    if [ -x "${pg_bin}/pg_config" ]; then
        "${pg_bin}/pg_config" --sharedir
    else
        echo "/usr/share/postgresql/${pg_version}"
    fi
}
pg_pkglibdir() {
    if [ -x "${pg_bin}/pg_config" ]; then
        "${pg_bin}/pg_config" --pkglibdir
    else
        echo "/usr/lib/postgresql/${pg_version}/lib"
    fi
}
timescaledb_installed() {
    [ -x "${pg_bin}/postgres" ] &&
        [ -f "$(pg_sharedir)/extension/timescaledb.control" ] &&
        [ -f "$(pg_pkglibdir)/timescaledb.so" ]
}

sketches_installed() {
    [ -f "$(pg_sharedir)/extension/hll.control" ] &&
        [ -f "$(pg_sharedir)/extension/tdigest.control" ]
}
sketch_packages=("postgresql-${pg_version}-hll" "postgresql-${pg_version}-tdigest")

# --- fast path (no root needed) -----------------------------------------------------
if timescaledb_installed && sketches_installed; then
    log "PostgreSQL ${pg_version} with TimescaleDB, hll and tdigest already installed (${pg_bin})"
    exit 0
fi

# --- root --------------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        log "re-running with sudo"
        exec sudo -E -- bash "$0" "$@"
    fi
    die "must run as root (or with sudo available)"
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2
        apt_updated=1
    fi
}
missing_packages() {
    local pkg status
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "installed" ] || printf '%s\n' "$pkg"
    done
}
apt_install() {
    local missing
    missing="$(missing_packages "$@")"
    [ -n "$missing" ] || return 0
    # shellcheck disable=SC2086
    log "installing:" $missing
    apt_update
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
}

# Keep the server package from creating (and starting) a default cluster, but only
# when the server is not installed yet: an existing setup is left exactly as it is.
if [ "$(missing_packages "postgresql-${pg_version}")" != "" ] &&
    [ ! -e /etc/postgresql-common/createcluster.d/eventbunker.conf ]; then
    log "disabling creation of a default cluster (/etc/postgresql-common/createcluster.d/eventbunker.conf)"
    mkdir -p /etc/postgresql-common/createcluster.d
    cat >/etc/postgresql-common/createcluster.d/eventbunker.conf <<'EOF'
# Written by EventBunker's scripts/install-postgres.sh: EventBunker manages its own
# cluster under its data directory, so the packages must not create/start "main".
# Delete this file to get Debian's default cluster for later PostgreSQL installs.
create_main_cluster = false
EOF
fi

# --- the sketch extensions: packaged on both -------------------------------------------
if ! sketches_installed; then
    apt_install "${sketch_packages[@]}"
    sketches_installed || die "${sketch_packages[*]} installed but hll.control or tdigest.control not found"
fi
if timescaledb_installed; then
    log "done: PostgreSQL ${pg_version} with TimescaleDB, hll and tdigest (${pg_bin})"
    exit 0
fi

# --- Debian 13: packaged -------------------------------------------------------------
if [ "$mode" = package ]; then
    apt_install "postgresql-${pg_version}" "postgresql-${pg_version}-timescaledb"
    timescaledb_installed || die "postgresql-${pg_version}-timescaledb installed but timescaledb.control not found"
    log "done: PostgreSQL ${pg_version} with TimescaleDB (${pg_bin})"
    exit 0
fi

# --- Debian 12: build Debian 13's source package ---------------------------------------
# The deb-src entry goes first so that a fresh machine needs a single apt-get update.
mirror="${EVENTBUNKER_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list.d/debian.sources ]; then
    # First URI of the stanza(s) serving the main archive (not -security).
    mirror="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
        /etc/apt/sources.list.d/debian.sources)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"
case "$mirror" in
    *snapshot.debian.org*) mirror=http://deb.debian.org/debian ;;  # frozen snapshots predate trixie's timescaledb
esac

src_list=/etc/apt/sources.list.d/eventbunker-trixie-src.sources
src_content="# Written by EventBunker's scripts/install-postgres.sh: Debian 13's *source*
# packages only (to build TimescaleDB for PostgreSQL ${pg_version}); no binaries.
Types: deb-src
URIs: ${mirror}
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"
if [ ! -f "$src_list" ] || [ "$(cat "$src_list")" != "$(printf '%s' "$src_content")" ]; then
    log "adding deb-src entry for trixie (${src_list})"
    printf '%s' "$src_content" >"$src_list"
    apt_updated=0
    apt_update
fi
apt_install "postgresql-${pg_version}" "postgresql-server-dev-${pg_version}" \
    cmake build-essential dpkg-dev libssl-dev ca-certificates

build_root="${EVENTBUNKER_TSDB_BUILD_DIR:-/var/cache/eventbunker/timescaledb-build}"
log "fetching timescaledb source (trixie) into ${build_root}"
rm -rf "$build_root"
mkdir -p "$build_root"
# apt downloads as _apt when it can write there (avoids the "unsandboxed" warning).
if id _apt >/dev/null 2>&1; then chown _apt "$build_root"; fi
fetch_source() { (cd "$build_root" && apt-get source -qq timescaledb/trixie >&2); }
if ! fetch_source; then
    # The entry existed but its lists were never downloaded (e.g. an interrupted run).
    [ "$apt_updated" -eq 0 ] || die "apt-get source timescaledb failed"
    apt_update
    fetch_source || die "apt-get source timescaledb failed"
fi
src_dir="$(find "$build_root" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)"
[ -n "$src_dir" ] || die "no timescaledb-* directory after apt-get source"
log "building $(basename "$src_dir") against PostgreSQL ${pg_version}"
(
    cd "$src_dir"
    ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DAPACHE_ONLY=1 \
        -DWARNINGS_AS_ERRORS=OFF \
        -DPG_CONFIG="${pg_bin}/pg_config" >&2
    make -C build -j"$(nproc)" >&2
    make -C build install >&2
)
timescaledb_installed || die "build finished but timescaledb.control not found in $(pg_sharedir)/extension"
log "done: PostgreSQL ${pg_version} with TimescaleDB $(basename "$src_dir" | sed 's/^timescaledb-//') (${pg_bin})"
