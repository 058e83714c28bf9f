#!/usr/bin/env bash
# Prometheus (Debian's server) scraping a local epp stack, with the compose stack's config.
#
#   scripts/prometheus.sh start DIR PORT [OPTIONS] JOB=HOST:PORT...
#   scripts/prometheus.sh config DIR [OPTIONS] JOB=HOST:PORT...   (only writes DIR/prometheus.yml)
#   scripts/prometheus.sh stop DIR      SIGTERM, wait, SIGKILL after 15 s
#   scripts/prometheus.sh status DIR    exit 0 when running
#
#   PORT             on 127.0.0.1; when busy, the next free one (the URL is printed, and kept in
#                    DIR/prometheus.url)
#   JOB=HOST:PORT    the target of a job of docker/prometheus.yml, e.g. epp-ingest=127.0.0.1:8001;
#                    jobs given no target (otel-collector in `make run`) are left out
#   --interval D     scrape and evaluation interval instead of the file's (tests: 1s)
#   --rules DIR      rule files from DIR instead of docker/prometheus/ (tests: a scaled copy)
#
# One source of truth: DIR/prometheus.yml is docker/prometheus.yml with only the targets replaced
# (tests/deploy checks it), and DIR/prometheus links to the rule directory, so the relative
# rule_files paths of the file stay as they are. The server keeps its data in DIR/data, logs to
# DIR/prometheus.log and runs in its own session (like scripts/broker.sh: a Ctrl-C reaches only
# scripts/run.sh, which stops it in order). prometheus and promtool come from the Debian package
# `prometheus` (scripts/install-deps.sh).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SOURCE=$REPO/docker/prometheus.yml

die() {
    echo "prometheus.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# shellcheck source=scripts/lib/pidfile.sh
. "$REPO/scripts/lib/pidfile.sh"

# Prints the pid recorded in DIR when that process is a live prometheus of DIR's config.
live_pid() {
    pidfile_live "$1/prometheus.pid" "--config.file=$1/prometheus.yml"
}

# Writes DIR/prometheus.yml and the DIR/prometheus link from the options and JOB=HOST:PORT
# arguments.
write_config() {
    local dir=$1
    shift
    local interval="" rules=$REPO/docker/prometheus targets=() arg
    while [ $# -gt 0 ]; do
        arg=$1
        shift
        case "$arg" in
        --interval)
            [ $# -ge 1 ] || usage
            interval=$1
            shift
            [[ "$interval" =~ ^[0-9]+(ms|s|m)$ ]] || die "bad interval: $interval"
            ;;
        --rules)
            [ $# -ge 1 ] || usage
            rules=$(cd "$1" && pwd) || die "no such rule directory: $1"
            shift
            ;;
        *=*)
            [[ "$arg" =~ ^[a-z0-9-]+=[A-Za-z0-9.-]+:[0-9]+$ ]] || die "bad target: $arg (JOB=HOST:PORT)"
            targets+=("$arg")
            ;;
        *) usage ;;
        esac
    done
    [ ${#targets[@]} -gt 0 ] || die "no JOB=HOST:PORT target given"
    local t
    for t in "${targets[@]}"; do
        grep -q "^  - job_name: ${t%%=*}\$" "$SOURCE" || die "docker/prometheus.yml has no job ${t%%=*}"
    done
    # The file is edited as text, so that comments and layout stay as they are: within the
    # job's block the quoted "host:port" of `targets:` is replaced; a job with no target is
    # dropped with its block (which ends at the next job or at the next top-level key).
    awk -v interval="$interval" -v targets="${targets[*]}" '
        BEGIN {
            n = split(targets, list, " ")
            for (i = 1; i <= n; i++) {
                split(list[i], kv, "=")
                want[kv[1]] = kv[2]
            }
        }
        /^[a-z_]+:/ { drop = 0; section = $1 }
        /^  - job_name: / { job = $3; drop = !(job in want) }
        drop { next }
        section == "global:" && interval != "" && /^  (scrape|evaluation)_interval: / {
            sub(/: .*/, ": " interval)
        }
        section == "scrape_configs:" && /targets: \[/ {
            sub(/\["[^"]*"\]/, "[\"" want[job] "\"]")
        }
        { print }
    ' "$SOURCE" >"$dir/prometheus.yml.new"
    mv "$dir/prometheus.yml.new" "$dir/prometheus.yml"
    ln -sfn "$rules" "$dir/prometheus"
}

cmd_config() {
    [ $# -ge 2 ] || usage
    local dir=$1
    shift
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    write_config "$dir" "$@"
    echo "prometheus.sh: wrote $dir/prometheus.yml"
}

cmd_start() {
    [ $# -ge 3 ] || usage
    local dir=$1 port=$2
    shift 2
    [[ "$port" =~ ^[0-9]+$ ]] || die "bad port: $port"
    command -v prometheus >/dev/null ||
        die "prometheus is not installed (Debian package prometheus: scripts/install-deps.sh)"
    mkdir -p "$dir/data"
    dir=$(cd "$dir" && pwd)
    if live_pid "$dir" >/dev/null; then
        die "already running (pid $(live_pid "$dir")); stop it first"
    fi
    write_config "$dir" "$@"
    local check
    if ! check=$(promtool check config "$dir/prometheus.yml" 2>&1); then
        echo "$check" >&2
        die "the generated $dir/prometheus.yml does not pass promtool check config"
    fi
    local want=$port
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
    done
    [ "$port" != "$want" ] && echo "prometheus.sh: port $want is busy: using $port"
    rm -f "$dir/prometheus.pid" "$dir/prometheus.url"
    setsid prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
        --web.listen-address="127.0.0.1:$port" </dev/null >>"$dir/prometheus.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/prometheus.pid"
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/-/ready" 2>/dev/null; then
            echo "http://127.0.0.1:$port" >"$dir/prometheus.url"
            echo "prometheus.sh: prometheus pid $pid, http://127.0.0.1:$port (data $dir/data)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/prometheus.log" >&2 || true
            die "prometheus exited during start-up (port $port busy?); log: $dir/prometheus.log"
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    die "prometheus not ready after 30 s; log: $dir/prometheus.log"
}

cmd_stop() {
    [ $# -ge 1 ] || usage
    [ -d "$1" ] || return 0
    local dir
    dir=$(cd "$1" && pwd)
    pidfile_stop "$dir/prometheus.pid" "--config.file=$dir/prometheus.yml" prometheus.sh prometheus 15
}

cmd_status() {
    [ $# -ge 1 ] || usage
    local pid dir
    dir=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
    if pid=$(live_pid "$dir"); then
        echo "prometheus.sh: running, pid $pid"
        return 0
    fi
    echo "prometheus.sh: not running"
    return 3
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
config) cmd_config "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
*) usage ;;
esac
