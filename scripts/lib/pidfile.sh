# shellcheck shell=bash
# Background processes recorded in a pid file; sourced by scripts/broker.sh and
# scripts/prometheus.sh.

# Prints the pid in PIDFILE when that process is alive (not a zombie) and its command line
# contains PATTERN; fails otherwise (so a pid reused by another program is never signalled).
pidfile_live() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    echo "$pid"
}

# pidfile_stop PIDFILE PATTERN PREFIX NAME SECONDS: SIGTERM to that process, SIGKILL when it has
# not exited after SECONDS; removes PIDFILE and prints "PREFIX: stopped NAME PID" (nothing when
# it was not running).
pidfile_stop() {
    local pidfile=$1 pattern=$2 prefix=$3 name=$4 seconds=$5 pid
    pid=$(pidfile_live "$pidfile" "$pattern") || {
        rm -f "$pidfile"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((seconds * 10))); do
        pidfile_live "$pidfile" "$pattern" >/dev/null || break
        sleep 0.1
    done
    if pidfile_live "$pidfile" "$pattern" >/dev/null; then
        echo "$prefix: $name $pid ignored SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        while pidfile_live "$pidfile" "$pattern" >/dev/null; do sleep 0.05; done
    fi
    rm -f "$pidfile"
    echo "$prefix: stopped $name $pid"
}
