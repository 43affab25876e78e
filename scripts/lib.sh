# Shared helpers for scripts/run and scripts/test. Source it; do not run it.

OMS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$OMS_ROOT/.venv"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

find_python() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    log "Python 3.11 is required (Django 5.2 LTS); install it and retry." >&2
    return 1
}

# Create .venv and install the project (with extras "$1") when pyproject.toml changed.
ensure_venv() {
    local extras="${1:-}"
    local spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    if [ ! -x "$VENV/bin/python" ]; then
        log "Creating virtualenv in .venv"
        "$(find_python)" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$(sha256sum "$OMS_ROOT/pyproject.toml" | cut -c1-16)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        log "Installing dependencies ($spec)"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        (cd "$OMS_ROOT" && "$VENV/bin/python" -m pip install -q -e "$spec")
        touch "$stamp"
    fi
}

# Print host and port of a postgres:// URL.
url_host_port() {
    "$VENV/bin/python" - "$1" <<'PY'
import sys
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
print(url.hostname or "127.0.0.1", url.port or 5432)
PY
}

postgres_answers() {
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys
from urllib.parse import urlsplit, urlunsplit
import psycopg
url = urlsplit(sys.argv[1])
psycopg.connect(urlunsplit(url._replace(path="/postgres")), connect_timeout=3).close()
PY
}

# Make sure a PostgreSQL server answers at $DATABASE_URL: start a throwaway cluster from
# the installed binaries (installing them with apt-get when missing) if nothing does.
ensure_postgres() {
    local url="$1"
    if postgres_answers "$url"; then
        return 0
    fi
    read -r host port < <(url_host_port "$url")
    log "No PostgreSQL at $host:$port; starting a throwaway cluster"
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bindir" ]; then
        log "Installing PostgreSQL with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    local datadir="/var/tmp/oms-pg-$port"
    local as_postgres=()
    if [ "$(id -u)" = "0" ]; then
        as_postgres=(runuser -u postgres --)
    fi
    if [ ! -f "$datadir/PG_VERSION" ]; then
        mkdir -p "$datadir"
        [ "$(id -u)" = "0" ] && chown postgres:postgres "$datadir"
        "${as_postgres[@]}" "$bindir/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    "${as_postgres[@]}" "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w start \
        -o "-p $port -c listen_addresses=$host -k /tmp -c max_connections=200 -c fsync=off" >/dev/null
    postgres_answers "$url" || { log "PostgreSQL did not come up; see $datadir/server.log"; return 1; }
}

# Tests that break a broker start their own redis-server: make sure the binary exists.
ensure_redis_binary() {
    if ! command -v redis-server >/dev/null 2>&1; then
        log "Installing redis-server with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
}
