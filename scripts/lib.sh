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

# Print host and port of a postgres:// or redis:// URL ($2: the default port).
url_host_port() {
    "$VENV/bin/python" - "$1" "${2:-5432}" <<'PY'
import sys
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
print(url.hostname or "127.0.0.1", url.port or sys.argv[2])
PY
}

# Only a server on this machine's loopback can be started here.
is_loopback() {
    case "$1" in
    127.* | localhost | ::1) return 0 ;;
    *) return 1 ;;
    esac
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

postgres_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# PostgreSQL refuses to run as root: run its programs as the postgres user then.
as_postgres() {
    if [ "$(id -u)" = "0" ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Make sure a PostgreSQL server answers at URL $1: when nothing does, start a cluster whose
# data directory is $2 from the installed binaries (installing them with apt-get when
# missing). POSTGRES_STARTED is set to the data directory when this call started it.
POSTGRES_STARTED=""
ensure_postgres() {
    local url="$1" datadir="$2" host port bindir
    if postgres_answers "$url"; then
        return 0
    fi
    read -r host port < <(url_host_port "$url" 5432)
    if ! is_loopback "$host"; then
        log "No PostgreSQL answers at $host:$port"
        return 1
    fi
    log "No PostgreSQL at $host:$port; starting a cluster in $datadir"
    bindir=$(postgres_bindir)
    if [ -z "$bindir" ]; then
        log "Installing PostgreSQL with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bindir=$(postgres_bindir)
    fi
    if [ ! -f "$datadir/PG_VERSION" ]; then
        mkdir -p "$datadir"
        if [ "$(id -u)" = "0" ]; then
            chown postgres:postgres "$datadir"
        fi
        if ! as_postgres test -w "$datadir"; then
            log "The postgres user cannot write to $datadir; move the checkout or set DATABASE_URL"
            return 1
        fi
        as_postgres "$bindir/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    as_postgres "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w start \
        -o "-p $port -c listen_addresses=$host -k /tmp -c max_connections=200 -c fsync=off" >/dev/null
    POSTGRES_STARTED="$datadir"
    postgres_answers "$url" || { log "PostgreSQL did not come up; see $datadir/server.log"; return 1; }
}

# Stop the cluster in data directory $1 (one ensure_postgres started).
postgres_stop() {
    as_postgres "$(postgres_bindir)/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}

# Create the database named in URL $1 when it does not exist.
ensure_database() {
    "$VENV/bin/python" - "$1" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
import psycopg
from psycopg import sql
url = urlsplit(sys.argv[1])
name = url.path.lstrip("/")
with psycopg.connect(urlunsplit(url._replace(path="/postgres")), autocommit=True) as conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print(f"==> Created database {name}", file=sys.stderr)
PY
}

# Tests that break a broker start their own redis-server: make sure the binary exists.
ensure_redis_binary() {
    if ! command -v redis-server >/dev/null 2>&1; then
        log "Installing redis-server with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
}

# The alert rules are checked and unit-tested with promtool (Debian's prometheus package).
ensure_promtool() {
    if ! command -v promtool >/dev/null 2>&1; then
        log "Installing promtool (prometheus) with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends prometheus >/dev/null
    fi
}

# Debian's chromium for the admin browser test (tests/admin/test_browser.py), driven by
# the playwright package's own driver: never `playwright install` (no browser download).
ensure_chromium() {
    if [ ! -x /usr/bin/chromium ]; then
        log "Installing chromium with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends chromium >/dev/null
    fi
}

redis_answers() {
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys
import redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2, socket_timeout=2).ping()
PY
}

# Make sure a Redis server answers at redis:// URL $1: when nothing does, start redis-server
# on its port with its files in directory $2 (installing it with apt-get when missing).
# REDIS_STARTED is set to its process id when this call started it.
REDIS_STARTED=""
ensure_redis() {
    local url="$1" dir="$2" host port bind
    if redis_answers "$url"; then
        return 0
    fi
    read -r host port < <(url_host_port "$url" 6379)
    if ! is_loopback "$host"; then
        log "No Redis answers at $host:$port"
        return 1
    fi
    bind="$host"
    [ "$host" = "localhost" ] && bind=127.0.0.1
    ensure_redis_binary
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    log "No Redis at $host:$port; starting redis-server in $dir"
    redis-server --bind "$bind" --port "$port" --dir "$dir" --logfile "$dir/redis.log" \
        --appendonly yes --save "" --daemonize no &
    REDIS_STARTED=$!
    for _ in $(seq 50); do
        redis_answers "$url" && return 0
        kill -0 "$REDIS_STARTED" 2>/dev/null || break
        sleep 0.1
    done
    log "redis-server did not start; see $dir/redis.log"
    return 1
}

# Print redis:// URL $1 with database number $2.
redis_url_with_db() {
    "$VENV/bin/python" - "$1" "$2" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
print(urlunsplit(urlsplit(sys.argv[1])._replace(path=f"/{sys.argv[2]}")))
PY
}
