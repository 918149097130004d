#!/usr/bin/env bash
# Build and start the container stack for real and send one complaint through it.
#
#   bash scripts/compose-smoke.sh
#
# Needs root (or sudo) on a Debian machine. It installs Docker and Compose from Debian's packages if they are
# missing, starts a Docker daemon if none is running (with no bridge and no NAT rules: everything stays on
# loopback, and the daemon is stopped again at the end), and, where Docker Hub cannot be reached, builds stand-in
# base images for python:3.11-slim and postgres:15 from Debian bookworm (debootstrap + docker import; about four
# minutes the first time, kept for the next run). Then scripts/compose_smoke.py starts a Dovecot and an SMTP sink
# on loopback, brings the stack up with `docker-compose` (the project's docker-compose.yml with a host-network
# override), appends a complaint to the mailbox, waits for the acknowledgement at the sink, checks the logs for
# tracebacks and takes the stack down. Exit 0 only when the complaint was acknowledged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "compose-smoke: $*" >&2; }
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
        </dev/null >&2
fi
bash scripts/setup.sh >&2  # the checkout's .venv, Dovecot: the smoke test's own mail servers come from tests/servers.py

started_dockerd=no
if ! "${SUDO[@]}" docker info >/dev/null 2>&1; then
    log "starting a Docker daemon (no bridge, no NAT; host networking only)"
    "${SUDO[@]}" sh -c 'nohup dockerd --iptables=false --ip-forward=false --bridge=none \
        >/tmp/mailbot-smoke-dockerd.log 2>&1 & echo $! >/tmp/mailbot-smoke-dockerd.pid'
    started_dockerd=yes
    for _ in $(seq 60); do "${SUDO[@]}" docker info >/dev/null 2>&1 && break; sleep 1; done
    "${SUDO[@]}" docker info >/dev/null 2>&1 || { log "dockerd did not start: see /tmp/mailbot-smoke-dockerd.log"; exit 1; }
fi
stop_dockerd() {
    if [ "$started_dockerd" = yes ]; then
        "${SUDO[@]}" kill "$(cat /tmp/mailbot-smoke-dockerd.pid)" 2>/dev/null || true
    fi
}
trap stop_dockerd EXIT

have_image() { "${SUDO[@]}" docker image inspect "$1" >/dev/null 2>&1; }
pull() { timeout 30 "${SUDO[@]}" docker pull -q "$1" >/dev/null 2>&1; }

MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ROOTFS=/var/cache/mailbot-smoke
base_rootfs() {
    if [ ! -x "$ROOTFS/base/usr/bin/apt-get" ]; then
        log "debootstrap of Debian bookworm (minbase) from $MIRROR"
        "${SUDO[@]}" rm -rf "$ROOTFS/base"
        "${SUDO[@]}" mkdir -p "$ROOTFS"
        "${SUDO[@]}" debootstrap --variant=minbase bookworm "$ROOTFS/base" "$MIRROR" >&2
    fi
}
in_root() {  # in_root DIR COMMAND...: run in a chroot with /proc and the host's resolver
    local dir="$1"; shift
    "${SUDO[@]}" cp /etc/resolv.conf "$dir/etc/resolv.conf"
    "${SUDO[@]}" mount -t proc proc "$dir/proc"
    local status=0
    "${SUDO[@]}" chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@" \
        || status=$?
    "${SUDO[@]}" umount "$dir/proc"
    return "$status"
}
import_root() {  # import_root DIR TAG CHANGES...
    local dir="$1" tag="$2"; shift 2
    local changes=()
    for change in "$@"; do changes+=(--change "$change"); done
    "${SUDO[@]}" tar -C "$dir" -c . | "${SUDO[@]}" docker import "${changes[@]}" - "$tag" >/dev/null
}

if ! have_image python:3.11-slim && ! pull python:3.11-slim; then
    log "python:3.11-slim cannot be pulled: building a stand-in from Debian bookworm"
    base_rootfs
    dir="$ROOTFS/python"
    "${SUDO[@]}" rm -rf "$dir" && "${SUDO[@]}" cp -a "$ROOTFS/base" "$dir"
    # The machine's own extra certificate authorities (a proxy's, say) are trusted inside too, as outside.
    if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
        "${SUDO[@]}" mkdir -p "$dir/usr/local/share/ca-certificates"
        "${SUDO[@]}" cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
    fi
    in_root "$dir" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv \
        ca-certificates >/dev/null && update-ca-certificates >/dev/null && python3 -m venv /usr/local \
        && apt-get clean && rm -rf /var/lib/apt/lists/*' >&2
    # Like the official image: python and pip in /usr/local/bin, first on the PATH; pip trusts the system's CAs.
    import_root "$dir" python:3.11-slim 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' 'CMD ["python3"]'
fi
if ! have_image postgres:15 && ! pull postgres:15; then
    log "postgres:15 cannot be pulled: building a stand-in from Debian bookworm's postgresql-15"
    base_rootfs
    dir="$ROOTFS/postgres"
    "${SUDO[@]}" rm -rf "$dir" && "${SUDO[@]}" cp -a "$ROOTFS/base" "$dir"
    in_root "$dir" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends postgresql-15 \
        >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*' >&2
    # The official image's contract that the compose file uses: POSTGRES_USER/PASSWORD/DB, pg_isready, a UTF8 cluster.
    "${SUDO[@]}" tee "$dir/usr/local/bin/docker-entrypoint.sh" >/dev/null <<'EOF'
#!/bin/sh
set -e
PGDATA=/var/lib/postgresql/data
BIN=/usr/lib/postgresql/15/bin
mkdir -p "$PGDATA" /run/postgresql && chown -R postgres:postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "$POSTGRES_PASSWORD" > /tmp/pwfile
    chown postgres /tmp/pwfile
    su postgres -c "$BIN/initdb -D $PGDATA -E UTF8 --locale=C.UTF-8 -U $POSTGRES_USER --pwfile=/tmp/pwfile --auth=md5" >/dev/null
    rm -f /tmp/pwfile
    su postgres -c "$BIN/pg_ctl -D $PGDATA -o '-c listen_addresses= -p ${PGPORT:-5432}' -w start" >/dev/null
    su postgres -c "PGPASSWORD='$POSTGRES_PASSWORD' psql -q -p ${PGPORT:-5432} -U $POSTGRES_USER -d postgres \
        -c \"CREATE DATABASE $POSTGRES_DB\"" || true
    su postgres -c "$BIN/pg_ctl -D $PGDATA -w stop" >/dev/null
    echo "host all all all md5" >> "$PGDATA/pg_hba.conf"
fi
exec su postgres -c "exec $BIN/postgres -D $PGDATA -c listen_addresses='*' -p ${PGPORT:-5432}"
EOF
    "${SUDO[@]}" chmod 755 "$dir/usr/local/bin/docker-entrypoint.sh"
    import_root "$dir" postgres:15 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'CMD ["/usr/local/bin/docker-entrypoint.sh"]'
fi

"${SUDO[@]}" .venv/bin/python scripts/compose_smoke.py
