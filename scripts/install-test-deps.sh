#!/usr/bin/env bash
# Install and start what the test suite needs beyond Python packages (idempotent; run as root).
#
#   - Dovecot (IMAP + LMTP) from Debian's packages: the tests start their own instance with a
#     config in a temp dir (tests/servers/dovecot.py); the system service is not used.
#   - Postfix from Debian's packages, for its `smtp-sink` benchmarking server only (the intake
#     benchmark's `--sink smtp-sink`); the Postfix mail system itself is not started or used.
#   - Chromium from Debian's packages, for the browser tests (Playwright drives /usr/bin/chromium;
#     Playwright's own browser download is not used).
#   - PostgreSQL on 127.0.0.1:5432 with a database `test`, and Redis on 127.0.0.1:6379: started
#     if installed but not running (the commands this machine kind documents), then waited for.
#
# Usage: sudo scripts/install-test-deps.sh
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DB=test
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
WAIT_S=60

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "run as root (or install sudo)"
    SUDO="sudo"
fi

# wait_until DESCRIPTION COMMAND...: retry COMMAND every 0.5 s for up to WAIT_S seconds.
wait_until() {
    local what=$1; shift
    local deadline=$((SECONDS + WAIT_S))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            die "$what did not come up within ${WAIT_S}s"
        fi
        sleep 0.5
    done
}

# --- Dovecot, Postfix's smtp-sink, Chromium ---------------------------------------------------------------------
DEBIAN_PACKAGES=(dovecot-core dovecot-imapd dovecot-lmtpd postfix chromium)

package_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    package_installed "$package" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    }
    # Refresh the package lists only when apt does not know the packages (a fresh machine).
    if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
        log "apt-get update"
        $SUDO apt-get update -q
    fi
    log "installing ${missing[*]}"
    if ! apt_install "${missing[@]}"; then
        log "install failed; refreshing package lists and retrying once"
        $SUDO apt-get update -q
        apt_install "${missing[@]}"
    fi
else
    log "dovecot, postfix and chromium already installed"
fi
[ -x /usr/bin/chromium ] || die "chromium not found after install"
[ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || die "dovecot binary not found after install"
[ -x /usr/sbin/smtp-sink ] || die "smtp-sink (postfix) not found after install"

# --- PostgreSQL ------------------------------------------------------------------------------------
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

if command -v pg_isready >/dev/null 2>&1 && pg_ready; then
    log "postgresql answers on $PG_HOST:$PG_PORT"
else
    command -v pg_ctlcluster >/dev/null 2>&1 || die "PostgreSQL is not installed (expected on this machine kind)"
    [ -d /etc/postgresql ] || die "no PostgreSQL cluster under /etc/postgresql"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting postgresql $version/main"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_until "postgresql" pg_ready
fi
if ! psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" 2>/dev/null | grep -q 1; then
    log "creating database $PG_DB"
    createdb -h "$PG_HOST" -p "$PG_PORT" -U postgres "$PG_DB"
fi

# --- Redis -----------------------------------------------------------------------------------------
redis_ready() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

if command -v redis-cli >/dev/null 2>&1 && redis_ready; then
    log "redis answers on $REDIS_HOST:$REDIS_PORT"
else
    command -v redis-server >/dev/null 2>&1 || die "Redis is not installed (expected on this machine kind)"
    log "starting redis-server"
    $SUDO mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_until "redis" redis_ready
fi

log "ready: dovecot, smtp-sink, chromium, postgresql ($PG_HOST:$PG_PORT/$PG_DB), redis ($REDIS_HOST:$REDIS_PORT)"
