#!/usr/bin/env bash
# The whole test suite, as on a fresh machine: makes sure PostgreSQL and Mosquitto are installed
# and running (installing them with apt-get when missing), then runs formatting, lints and every
# test (unit, store conformance on SQLite and PostgreSQL — TimescaleDB when the server has the
# extension — and end-to-end tests through real Mosquitto brokers).
#
# Environment:
#   WATERLINE_TEST_DATABASE_URL  PostgreSQL server the tests create their databases on
#                                (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root for: $*" >&2; return 1; fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- PostgreSQL -------------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    log "installing PostgreSQL"
    apt_install postgresql postgresql-client
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi
pg_isready -h 127.0.0.1 -p 5432

if [ -z "${WATERLINE_TEST_DATABASE_URL:-}" ]; then
    if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1 </dev/null; then
        export WATERLINE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    else
        # A fresh Debian cluster asks for a password over TCP: give the postgres role one
        # (through the local socket, as the postgres OS user) and use it.
        log "setting a password for the postgres role (test server without trust authentication)"
        as_root su postgres -c "psql -Atqc \"ALTER ROLE postgres PASSWORD 'waterline-test'\"" </dev/null
        export WATERLINE_TEST_DATABASE_URL="postgres://postgres:waterline-test@127.0.0.1:5432/postgres"
    fi
fi
available=$(psql "$WATERLINE_TEST_DATABASE_URL" -Atqc "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'" </dev/null || echo 0)
preloaded=$(psql "$WATERLINE_TEST_DATABASE_URL" -Atqc "SHOW shared_preload_libraries" </dev/null | grep -c timescaledb || true)
if [ "$available" = "1" ] && [ "$preloaded" != "0" ]; then
    log "TimescaleDB extension available and preloaded: its conformance tests will run"
elif [ "$available" = "1" ]; then
    log "TimescaleDB extension installed but not in shared_preload_libraries: its conformance tests will print SKIPPED"
else
    log "TimescaleDB extension NOT available on this server: its conformance tests will print SKIPPED"
fi

# --- Mosquitto --------------------------------------------------------------------------------
# The tests start private brokers on free ports; the system broker is started for parity with
# a production machine.
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    log "installing Mosquitto"
    apt_install mosquitto mosquitto-clients
fi
# The TLS tests make a throw-away CA with the openssl command line tool.
if ! command -v openssl >/dev/null; then
    log "installing openssl"
    apt_install openssl
fi
if ! pgrep -x mosquitto >/dev/null; then
    log "starting Mosquitto"
    as_root /usr/sbin/mosquitto -d -c /etc/mosquitto/mosquitto.conf || log "system Mosquitto did not start (tests use their own brokers)"
fi

# --- Rust tools -------------------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

export CARGO_TERM_COLOR=never
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "tests"
cargo nextest run --workspace --locked --no-fail-fast
