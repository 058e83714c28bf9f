#!/usr/bin/env bash
# A throwaway Postgres 15 cluster for `make run` and the tests.
#
#   scripts/pg.sh start DIR [PORT]        create (first time) and start; PORT defaults to 5432
#   scripts/pg.sh stop DIR                fast shutdown (no error when not running)
#   scripts/pg.sh status DIR              exit 0 when running
#   scripts/pg.sh restart DIR [fast|immediate]
#   scripts/pg.sh url DIR [DB]            prints postgresql://postgres:postgres@127.0.0.1:PORT/DB
#
# The server listens on 127.0.0.1:PORT only, with its unix socket inside DIR, and trusts
# loopback connections (it is a development cluster). The superuser is `postgres` with password
# `postgres`; the database `events_db` is created when absent. When run as root, the server runs
# as the `postgres` system user (Postgres refuses to run as root) and DIR is chowned to it.
#
# Durability stays at Postgres' defaults (fsync on): correctness tests need real durability.
# EPP_PG_FAST=1 at the first start turns fsync and synchronous_commit off, for benchmarks only.
set -euo pipefail

PG_BINDIR=${EPP_PG_BINDIR:-/usr/lib/postgresql/15/bin}

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Runs a Postgres binary as the cluster owner.
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

abs_dir() {
    mkdir -p "$1"
    (cd "$1" && pwd -P)
}

# The port a cluster was last configured with (from its epp.conf).
conf_port() {
    sed -n "s/^port = \([0-9]*\)$/\1/p" "$1/epp.conf" 2>/dev/null | tail -n 1
}

is_running() {
    [ -f "$1/PG_VERSION" ] && as_owner "$PG_BINDIR/pg_ctl" status -D "$1" >/dev/null 2>&1
}

cmd_start() {
    local dir port
    [ $# -ge 1 ] || usage
    dir=$(abs_dir "$1")
    port=${2:-5432}
    [[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
    [ -x "$PG_BINDIR/initdb" ] || die "no Postgres 15 server binaries in $PG_BINDIR (run scripts/install-deps.sh)"

    if is_running "$dir"; then
        local cur
        cur=$(conf_port "$dir")
        if [ "$cur" = "$port" ]; then
            echo "pg.sh: already running on 127.0.0.1:$port (data $dir)"
            return 0
        fi
        die "already running in $dir on port $cur (asked for $port); stop it first"
    fi

    if [ "$(id -u)" = 0 ]; then
        chown -R postgres:postgres "$dir"
        chmod 700 "$dir"
        runuser -u postgres -- test -x "$dir" ||
            die "the postgres user cannot reach $dir: make its parent directories world-searchable (chmod o+x)"
    fi

    if [ ! -f "$dir/PG_VERSION" ]; then
        # initdb refuses a non-empty directory; a half-created cluster is useless anyway.
        if [ -n "$(ls -A "$dir")" ]; then
            die "$dir is not empty and holds no cluster; remove it first"
        fi
        as_owner "$PG_BINDIR/initdb" -D "$dir" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=trust >"$dir.initdb.log" 2>&1 ||
            {
                cat "$dir.initdb.log" >&2
                die "initdb failed"
            }
        rm -f "$dir.initdb.log"
        {
            echo "shared_buffers = 256MB"
            echo "max_connections = 200"
            if [ "${EPP_PG_FAST:-0}" = 1 ]; then
                echo "fsync = off"
                echo "synchronous_commit = off"
                echo "full_page_writes = off"
            fi
            echo "include_if_exists = 'epp.conf'"
        } | as_owner tee -a "$dir/postgresql.conf" >/dev/null
    fi

    # Written at every start so that the same cluster can move to another port.
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
        "$port" "$dir" | as_owner tee "$dir/epp.conf" >/dev/null

    if ! as_owner "$PG_BINDIR/pg_ctl" start -D "$dir" -l "$dir/server.log" -w -t 60 >/dev/null; then
        tail -n 20 "$dir/server.log" >&2 || true
        die "the server did not start (port $port busy?); log: $dir/server.log"
    fi
    local i
    for i in $(seq 1 100); do
        if "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            break
        fi
        [ "$i" = 100 ] && die "not ready after 20 s"
        sleep 0.2
    done

    local psql=("$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres)
    "${psql[@]}" -c "ALTER USER postgres PASSWORD 'postgres'"
    if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'events_db'")" != 1 ]; then
        "${psql[@]}" -c "CREATE DATABASE events_db"
    fi
    echo "pg.sh: ready on 127.0.0.1:$port (data $dir)"
}

cmd_stop() {
    local dir
    [ $# -ge 1 ] || usage
    [ -d "$1" ] || return 0
    dir=$(abs_dir "$1")
    if is_running "$dir"; then
        as_owner "$PG_BINDIR/pg_ctl" stop -D "$dir" -m fast -w -t 60 >/dev/null
        echo "pg.sh: stopped (data $dir)"
    fi
}

cmd_status() {
    [ $# -ge 1 ] || usage
    [ -d "$1" ] || die "no such directory: $1"
    local dir
    dir=$(abs_dir "$1")
    if is_running "$dir"; then
        echo "pg.sh: running on 127.0.0.1:$(conf_port "$dir") (data $dir)"
        return 0
    fi
    echo "pg.sh: not running (data $dir)"
    return 3
}

cmd_restart() {
    [ $# -ge 1 ] || usage
    local dir mode=${2:-fast}
    case "$mode" in fast | immediate) ;; *) die "restart mode must be fast or immediate" ;; esac
    dir=$(abs_dir "$1")
    [ -f "$dir/PG_VERSION" ] || die "no cluster in $dir"
    as_owner "$PG_BINDIR/pg_ctl" restart -D "$dir" -m "$mode" -l "$dir/server.log" -w -t 60 >/dev/null
    echo "pg.sh: restarted ($mode) on 127.0.0.1:$(conf_port "$dir")"
}

cmd_url() {
    [ $# -ge 1 ] || usage
    local port
    port=$(conf_port "$1")
    [ -n "$port" ] || die "no cluster configured in $1"
    echo "postgresql://postgres:postgres@127.0.0.1:$port/${2:-events_db}"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
restart) cmd_restart "$@" ;;
url) cmd_url "$@" ;;
*) usage ;;
esac
