# shellcheck shell=bash
# Background processes recorded in a pid file; sourced by scripts/broker.sh,
# scripts/prometheus.sh and scripts/kafka.sh.

# 0 while process PID exists and is not a zombie. A process's exit is waited for with this, not
# with its command line: an exiting process's /proc/PID/cmdline reads empty as soon as its
# memory is detached, while it still unmaps it (for a JVM's heap, long enough for a caller to
# find it running after a "stop" -- scripts/kafka.sh's nodes did in CI).
pid_running() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Prints the pid in PIDFILE when that process is alive (not a zombie) and its command line
# contains PATTERN; fails otherwise (so a pid reused by another program is never signalled).
pidfile_live() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
    pid_running "$pid" || return 1
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
        pid_running "$pid" || break
        sleep 0.1
    done
    if pid_running "$pid"; then
        echo "$prefix: $name $pid ignored SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        while pid_running "$pid"; do sleep 0.05; done
    fi
    rm -f "$pidfile"
    echo "$prefix: stopped $name $pid"
}
