#!/usr/bin/env bash
# `make superset`: Apache Superset for epp, installed from PyPI into a virtual environment inside
# the checkout, provisioned with no manual step, serving the "epp events" dashboard
# (docs/superset.md).
#
#   scripts/superset.sh [BUILD_DIR]            install, provision and serve in the foreground,
#                                              beside a running `make run` (or starting one)
#   scripts/superset.sh install                the virtual environment only
#   scripts/superset.sh provision              install, then provision (needs DATABASE_URL or a
#                                              running `make run`), then exit
#   scripts/superset.sh serve                  serve a provisioned SUPERSET_HOME in the foreground
#   scripts/superset.sh --help | --help-markdown
#
# Install: SUPERSET_VENV is made with Debian's python3 and filled from
# docker/superset/requirements.lock with `pip install --require-hashes --no-deps`: every package
# pinned and hash-checked, nothing resolved at install time. It is remade when the lock changes.
# Provision: docker/superset/provision.py (what it does, step by step, is in its header). Serve:
# gunicorn on SUPERSET_BIND:SUPERSET_PORT, log in $SUPERSET_HOME/superset.log.
#
# Which Postgres: DATABASE_URL when set (events_db, as its owner or a superuser: provisioning
# creates the read-only role epp_superset). Otherwise the one `make run` started in
# $EPP_RUN_DIR/pg (scripts/pg.sh url); when that is not running, this script starts
# `scripts/run.sh BUILD_DIR` in the background (its output in $EPP_RUN_DIR/logs/run.log) and stops
# it again on Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SUPERSET_DIR=$REPO/docker/superset
LOCK=$SUPERSET_DIR/requirements.lock

# name|default|description: the table behind --help, --help-markdown and docs/configuration.md.
OPTIONS=(
    "DATABASE_URL|(the make run stack's)|events_db as its owner or a superuser; provisioning creates the read-only role there"
    "SUPERSET_PORT|8088|Port Superset listens on"
    "SUPERSET_BIND|127.0.0.1|Address Superset listens on (0.0.0.0 in Compose)"
    "SUPERSET_ADMIN_USER|admin|The admin user provisioning creates"
    "SUPERSET_ADMIN_PASSWORD|admin123|Its password at creation (a warning is printed while it is the default)"
    "SUPERSET_RESET_ADMIN_PASSWORD|0|1: set the existing admin's password to SUPERSET_ADMIN_PASSWORD (otherwise a different one is reported and left alone)"
    "SUPERSET_ADMIN_EMAIL|USER@localhost|The admin's e-mail address"
    "SUPERSET_DB_ROLE|epp_superset|The read-only Postgres role Superset connects as"
    "SUPERSET_SCHEMA_WAIT_S|60|How long provisioning waits for epp-consumer to have applied the migrations (sql/020)"
    "SUPERSET_HOME|\$EPP_RUN_DIR/superset|Superset's state: metadata database, secret key and role password (0600 files), log"
    "SUPERSET_SECRET_KEY|(generated)|Overrides the secret key generated into \$SUPERSET_HOME/secret_key"
    "SUPERSET_VENV|.venv-superset|The virtual environment (inside the checkout, git-ignored)"
    "SUPERSET_PYTHON|/usr/bin/python3|The Python 3.11 the virtual environment is made with"
    "SUPERSET_WORKERS|2|gunicorn worker processes (4 threads each)"
    "EPP_RUN_DIR|.run|Where \`make run\` keeps its state (its Postgres: \$EPP_RUN_DIR/pg)"
)

# print_options FORMAT -> one printf FORMAT line (arguments: name, description, default) per option
print_options() {
    local o name def desc
    for o in "${OPTIONS[@]}"; do
        IFS='|' read -r name def desc <<<"$o"
        # shellcheck disable=SC2059 # the format is the argument
        printf "$1" "$name" "$desc" "$def"
    done
}

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    echo
    echo "Environment:"
    print_options "  %-30s %s (default: %s)\n"
}

help_markdown() {
    echo "| env | description | default |"
    echo "|---|---|---|"
    # shellcheck disable=SC2016 # the backquotes are Markdown
    print_options '| `%s` | %s | `%s` |\n'
}

say() { echo "superset: $*"; }
die() {
    echo "superset: $*" >&2
    exit 1
}

RUN_DIR=${EPP_RUN_DIR:-$REPO/.run}
VENV=${SUPERSET_VENV:-$REPO/.venv-superset}
PY=${SUPERSET_PYTHON:-/usr/bin/python3}
PORT=${SUPERSET_PORT:-8088}
BIND=${SUPERSET_BIND:-127.0.0.1}
WORKERS=${SUPERSET_WORKERS:-2}
export SUPERSET_HOME=${SUPERSET_HOME:-$RUN_DIR/superset}
export SUPERSET_CONFIG_PATH=$SUPERSET_DIR/superset_config.py
# Superset computes "now", "today" and relative ranges in the server's zone; epp's buckets are UTC.
export TZ=UTC

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_install() {
    local want have t0
    want=$(sha256sum "$LOCK" | cut -d' ' -f1)
    have=$(cat "$VENV/.epp-lock-sha256" 2>/dev/null || true)
    if [ "$have" = "$want" ] && [ -x "$VENV/bin/gunicorn" ]; then
        say "installed: Superset $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-superset"))') in $VENV (lock unchanged)"
        return 0
    fi
    "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
        die "$PY is not Python 3.11 (set SUPERSET_PYTHON); Superset's lock is for 3.11"
    "$PY" -c 'import ensurepip, venv' 2>/dev/null ||
        die "$PY cannot make virtual environments: install python3-venv (scripts/install-deps.sh does)"
    t0=$(date +%s)
    # A lock that changed is a new environment: nothing of the old one stays behind.
    [ -e "$VENV" ] && say "the lock changed: making $VENV anew"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    say "installing Superset from $(basename "$LOCK") into $VENV ($(grep -c '^[a-zA-Z0-9_.-]*==' "$LOCK") pinned packages)..."
    # --no-build-isolation: the two packages published only as source (odfpy, wtforms-json) are
    # built with the environment's own setuptools, so nothing is fetched that the lock does not
    # pin and hash. PIP_FIND_LINKS and friends from the caller's environment do not apply.
    if ! env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$VENV/bin/pip" install --quiet --require-hashes --no-deps --no-build-isolation \
        -r "$LOCK"; then
        rm -rf "$VENV"
        die "pip install from $LOCK failed (see above)"
    fi
    echo "$want" >"$VENV/.epp-lock-sha256"
    say "installed Superset $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-superset"))') in $(($(date +%s) - t0)) s"
}

# Sets DATABASE_URL: the caller's, or the make run stack's (started when absent; STACK_PID then).
STACK_PID=""
find_stack() {
    local build=$1 may_start=$2
    if [ -n "${DATABASE_URL:-}" ]; then
        say "using DATABASE_URL (${DATABASE_URL%%://*}://...@${DATABASE_URL##*@})"
        return 0
    fi
    if bash "$REPO/scripts/pg.sh" status "$RUN_DIR/pg" >/dev/null 2>&1; then
        DATABASE_URL=$(bash "$REPO/scripts/pg.sh" url "$RUN_DIR/pg")
        export DATABASE_URL
        say "using the Postgres of the running \`make run\` ($RUN_DIR/pg): $DATABASE_URL"
        return 0
    fi
    [ "$may_start" = start ] || die "no DATABASE_URL and no \`make run\` running ($RUN_DIR/pg): start \`make run\`, or set DATABASE_URL"
    [ -x "$build/bin/epp-consumer" ] || die "no \`make run\` is running and $build/bin is not built: run \`make run\` (or \`make superset\`, which builds)"
    mkdir -p "$RUN_DIR/logs"
    say "no \`make run\` is running: starting one (its output: $RUN_DIR/logs/run.log)"
    local from
    from=$(stat -c %s "$RUN_DIR/logs/run.log" 2>/dev/null || echo 0)
    setsid bash "$REPO/scripts/run.sh" "$build" </dev/null >>"$RUN_DIR/logs/run.log" 2>&1 &
    STACK_PID=$!
    echo "$STACK_PID" >"$RUN_DIR/superset-stack.pid"
    for _ in $(seq 1 1200); do
        if tail -c +"$((from + 1))" "$RUN_DIR/logs/run.log" | grep -q "epp is running"; then
            DATABASE_URL=$(bash "$REPO/scripts/pg.sh" url "$RUN_DIR/pg")
            export DATABASE_URL
            say "\`make run\` is up: $DATABASE_URL"
            return 0
        fi
        kill -0 "$STACK_PID" 2>/dev/null || {
            tail -n 20 "$RUN_DIR/logs/run.log" >&2
            STACK_PID=""
            die "\`make run\` failed to start (above: the end of $RUN_DIR/logs/run.log)"
        }
        sleep 0.25
    done
    die "\`make run\` not up after 300 s (see $RUN_DIR/logs/run.log)"
}

stop_stack() {
    [ -n "$STACK_PID" ] || return 0
    say "stopping the \`make run\` this script started"
    kill -TERM "$STACK_PID" 2>/dev/null || true
    wait "$STACK_PID" 2>/dev/null || true
    STACK_PID=""
    rm -f "$RUN_DIR/superset-stack.pid"
}

cmd_provision() {
    local rc=0
    mkdir -p "$SUPERSET_HOME"
    # Superset logs a great deal while it provisions: to a file, shown when something fails.
    "$VENV/bin/python" "$SUPERSET_DIR/provision.py" 2>>"$SUPERSET_HOME/provision.log" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "superset: the last lines of $SUPERSET_HOME/provision.log:" >&2
        tail -n 30 "$SUPERSET_HOME/provision.log" >&2
        return "$rc"
    fi
}

gunicorn_args() {
    echo --pid "$SUPERSET_HOME/gunicorn.pid" -w "$WORKERS" -k gthread --threads 4 --timeout 120 --graceful-timeout 10 \
        -b "$BIND:$PORT" --limit-request-line 0 --limit-request-field_size 0
}

cmd_serve() {
    [ -x "$VENV/bin/gunicorn" ] || die "not installed: run scripts/superset.sh install"
    [ -f "$SUPERSET_HOME/superset.db" ] || die "not provisioned: run scripts/superset.sh provision"
    port_busy "$PORT" && die "port $PORT is in use: stop what holds it, or set SUPERSET_PORT"
    say "serving on http://$BIND:$PORT"
    # shellcheck disable=SC2046 # word splitting of the argument list is intended
    exec "$VENV/bin/gunicorn" $(gunicorn_args) "superset.app:create_app()"
}

# install, provision, serve; stops what it started on Ctrl-C or SIGTERM.
cmd_up() {
    local build=$1 pid user
    port_busy "$PORT" && die "port $PORT is in use (another Superset?): stop it, or set SUPERSET_PORT"
    cmd_install
    trap 'stop_stack' EXIT
    find_stack "$build" start
    cmd_provision || exit 1
    mkdir -p "$SUPERSET_HOME"
    # shellcheck disable=SC2046
    setsid "$VENV/bin/gunicorn" $(gunicorn_args) "superset.app:create_app()" \
        </dev/null >>"$SUPERSET_HOME/superset.log" 2>&1 &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; stop_stack; say "stopped"; exit 0' INT TERM
    trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; stop_stack' EXIT
    for _ in $(seq 1 240); do
        curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/health" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || {
            tail -n 30 "$SUPERSET_HOME/superset.log" >&2
            die "Superset exited during start-up (log: $SUPERSET_HOME/superset.log)"
        }
        sleep 0.5
    done
    user=${SUPERSET_ADMIN_USER:-admin}
    cat <<EOF

  Superset is running (log: $SUPERSET_HOME/superset.log):
    dashboard   http://$BIND:$PORT/superset/dashboard/epp-events/
    log in as   $user (password: SUPERSET_ADMIN_PASSWORD, default admin123)

  Press Ctrl-C to stop.
EOF
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1 &
        wait $! || true
    done
    wait "$pid" 2>/dev/null || true
    die "Superset exited (log: $SUPERSET_HOME/superset.log)"
}

case "${1:-}" in
--help | -h) usage ;;
--help-markdown) help_markdown ;;
install) cmd_install ;;
provision)
    cmd_install
    find_stack "$REPO/build" no
    cmd_provision
    ;;
serve) cmd_serve ;;
*) cmd_up "$(cd "${1:-$REPO/build}" && pwd)" ;;
esac
