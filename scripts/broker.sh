#!/usr/bin/env bash
# Starts and stops the dev broker (tools/epp-devbroker) in the background.
#
#   scripts/broker.sh start DIR [-- EPP-DEVBROKER-ARGS...]   prints the bootstrap address
#   scripts/broker.sh stop DIR                               SIGTERM, wait, SIGKILL after 10 s
#   scripts/broker.sh status DIR                             exit 0 when running
#
# DIR receives devbroker.pid, devbroker.addr (bootstrap servers), devbroker.control (control
# API URL) and devbroker.log. The binary is $EPP_DEVBROKER, else build/bin/epp-devbroker (build
# directory: $EPP_BUILD_DIR, default build). The broker runs in its own session, so a Ctrl-C
# in the terminal reaches only the script that owns it (scripts/run.sh), which stops it in order.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)

die() {
    echo "broker.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Prints the pid recorded in DIR when that process is a live epp-devbroker.
live_pid() {
    local pid
    pid=$(cat "$1/devbroker.pid" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q epp-devbroker || return 1
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    echo "$pid"
}

cmd_start() {
    [ $# -ge 1 ] || usage
    local dir=$1
    shift
    [ "${1:-}" = "--" ] && shift
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if live_pid "$dir" >/dev/null; then
        die "already running (pid $(live_pid "$dir")); stop it first"
    fi
    local bin=${EPP_DEVBROKER:-$REPO/${EPP_BUILD_DIR:-build}/bin/epp-devbroker}
    [ -x "$bin" ] || die "not built: $bin"
    rm -f "$dir/devbroker.addr" "$dir/devbroker.control" "$dir/devbroker.pid"
    setsid "$bin" --addr-file "$dir/devbroker.addr" --control-file "$dir/devbroker.control" "$@" \
        </dev/null >>"$dir/devbroker.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/devbroker.pid"
    local _
    for _ in $(seq 1 200); do
        if [ -s "$dir/devbroker.addr" ] && [ -s "$dir/devbroker.control" ]; then
            echo "broker.sh: epp-devbroker pid $pid, bootstrap $(cat "$dir/devbroker.addr"), control $(cat "$dir/devbroker.control")"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/devbroker.log" >&2 || true
            die "epp-devbroker exited during start-up; log: $dir/devbroker.log"
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    die "epp-devbroker not ready after 20 s; log: $dir/devbroker.log"
}

cmd_stop() {
    [ $# -ge 1 ] || usage
    local dir=$1 pid
    pid=$(live_pid "$dir") || {
        rm -f "$dir/devbroker.pid"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        live_pid "$dir" >/dev/null || break
        sleep 0.1
    done
    if live_pid "$dir" >/dev/null; then
        echo "broker.sh: epp-devbroker $pid ignored SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        while live_pid "$dir" >/dev/null; do sleep 0.05; done
    fi
    rm -f "$dir/devbroker.pid"
    echo "broker.sh: stopped epp-devbroker $pid"
}

cmd_status() {
    [ $# -ge 1 ] || usage
    local pid
    if pid=$(live_pid "$1"); then
        echo "broker.sh: running, pid $pid, bootstrap $(cat "$1/devbroker.addr" 2>/dev/null)"
        return 0
    fi
    echo "broker.sh: not running"
    return 3
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
