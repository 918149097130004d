#!/usr/bin/env bash
# Set up a fresh Debian machine for mailbot: Dovecot and PostgreSQL for the tests, and .venv with the bot and its test tools.
# Idempotent and quiet when there is nothing to do, because scripts/test.sh (and so CI) runs it every time.
# Run as root, or as a user with sudo (only the apt steps need it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()
fi

log() { echo "setup: $*" >&2; }

# --runtime: only what running the bot needs (the venv); the test servers are for scripts/test.sh.
runtime_only=no
[ "${1:-}" = "--runtime" ] && runtime_only=yes

apt_updated=no
apt_install() {
    if [ "${#SUDO[@]}" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
        log "need to install $* but am neither root nor able to sudo"
        exit 1
    fi
    # No stdin and no prompts: CI runs this with no terminal, and a debconf question would hang it.
    if [ "$apt_updated" = no ]; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2
        apt_updated=yes
    fi
    log "installing $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" </dev/null >&2
}

# --- Dovecot: the tests run their own throwaway instances of it (tests/servers.py) ---------------
have_dovecot() { PATH="$PATH:/usr/sbin:/sbin" command -v dovecot >/dev/null 2>&1; }
if [ "$runtime_only" = no ] && ! have_dovecot; then
    apt_install dovecot-imapd
    # The package starts a system-wide Dovecot on systemd hosts. The tests never use it (each runs its own
    # server on a free port), so a Dovecot we installed only for them is stopped and disabled rather than
    # left as an open IMAP service on a developer's machine. One that was there before is left alone.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        "${SUDO[@]}" systemctl disable --now dovecot.service >&2 2>/dev/null || true
    fi
fi

# --- PostgreSQL: the production database option is tested against a throwaway server too -----------
have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
if [ "$runtime_only" = no ] && ! have_postgres; then
    apt_install postgresql
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        "${SUDO[@]}" systemctl disable --now postgresql.service >&2 2>/dev/null || true
    fi
fi

# --- ClamAV's clamd: the optional attachment scan is tested against a real one (tests/servers.py) ----
have_clamd() { PATH="$PATH:/usr/sbin:/sbin" command -v clamd >/dev/null 2>&1; }
if [ "$runtime_only" = no ] && ! have_clamd; then
    apt_install clamav-daemon
    # The tests run their own clamd with a signature file they write; the system's (and freshclam, which
    # would try to download signatures) is not needed.
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        "${SUDO[@]}" systemctl disable --now clamav-daemon.service clamav-daemon.socket \
            clamav-freshclam.service >&2 2>/dev/null || true
    fi
fi

# --- Compose v1 (the one Debian packages): the tests check docker-compose.yml with `docker-compose config` -----
if [ "$runtime_only" = no ] && ! command -v docker-compose >/dev/null 2>&1; then
    apt_install docker-compose
fi

# --- Chromium and axe-core: the web form's browser tests (Playwright drives Debian's Chromium) ---------------
if [ "$runtime_only" = no ] && [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi
if [ "$runtime_only" = no ] && ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi

# --- Python >= 3.11 and its venv module ----------------------------------------------------------
python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
PYTHON=""
for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
        PYTHON="$(command -v "$candidate")"
        break
    fi
done
if [ -z "$PYTHON" ]; then
    apt_install python3 python3-venv
    PYTHON="$(command -v python3)"
    python_ok "$PYTHON" || { log "python3 >= 3.11 is required, found $("$PYTHON" --version)"; exit 1; }
fi
# Debian splits venv's pip bootstrap (ensurepip) into python3-venv.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
fi

# --- .venv with the bot (editable) and the test tools --------------------------------------------
if ! { [ -x .venv/bin/python ] && python_ok .venv/bin/python; }; then
    log "creating .venv with $PYTHON"
    rm -rf .venv
    "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml or the interpreter changed, so a test run does not wait on pip.
stamp=.venv/.mailbot-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -c 'import sys; print(sys.version)' | head -1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import mailbot, pytest' 2>/dev/null; then
    log "installing mailbot and its test dependencies into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' </dev/null >&2
    echo "$want" >"$stamp"
fi
# Bytecode for the bot's own modules, as a regular install has: an editable one has none, and where
# PYTHONDONTWRITEBYTECODE is set (many shells, containers and CI images) every `mailbot` command would compile
# its ~80 modules from source again, about 0.1 s of each start. Only changed files are compiled again.
.venv/bin/python -m compileall -q mailbot >/dev/null

# axe-core (the accessibility checker the browser tests run in the page), from the npm registry, kept in .venv.
if [ "$runtime_only" = no ] && [ ! -f .venv/axe/node_modules/axe-core/axe.min.js ]; then
    log "installing axe-core into .venv/axe"
    mkdir -p .venv/axe
    (cd .venv/axe && npm install --silent --no-audit --no-fund axe-core@4 </dev/null >&2)
fi
