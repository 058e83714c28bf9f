#!/usr/bin/env bash
# Apache Kafka (KRaft) from Maven Central, run as plain processes on Debian's Java 17.
#
#   scripts/kafka.sh fetch                         get the pinned broker jars (once), verify them
#   scripts/kafka.sh start DIR [--nodes N] [--port P] [--config KEY=VALUE]...
#                                                  start N (1 or 3) nodes; last line of output is
#                                                  KAFKA_BOOTSTRAP_SERVERS=host:port[,...];
#                                                  --config adds a broker setting (kept in DIR)
#   scripts/kafka.sh stop DIR                      SIGTERM every node, SIGKILL after 20 s
#   scripts/kafka.sh status DIR                    exit 0 when every node runs
#   scripts/kafka.sh bootstrap DIR                 print the bootstrap servers
#   scripts/kafka.sh kill DIR K                    SIGKILL node K (a crash, for fault tests)
#   scripts/kafka.sh stop-node DIR K               SIGTERM node K and wait (a clean stop)
#   scripts/kafka.sh start-node DIR K [--no-wait]  start node K again; wait until metadata lists it
#   scripts/kafka.sh pid DIR K                     print node K's pid (for SIGSTOP/SIGCONT)
#   scripts/kafka.sh version                       print the pinned Kafka version
#
# The jars come from Maven Central through scripts/kafka/pom.xml into $EPP_KAFKA_CACHE (default
# REPO/.cache/kafka, git-ignored) and must match scripts/kafka/SHA256SUMS exactly -- no jar more,
# none less, every sum equal -- or fetch fails loudly. Once they match, nothing is downloaded again.
#
# Each node is a combined broker+controller (node ids 1..N) listening on 127.0.0.1 only, with its
# configuration, data and log under DIR/node-K. The controller quorum is static
# (controller.quorum.voters), so a restarted cluster may move to other ports when its old ones are
# taken. DIR keeps its data across stop/start: `make run` relies on that. Topics are never created
# automatically (auto.create.topics.enable=false): the services create `events` and `events.dlq`
# at start-up. Replication defaults follow the node count: replication factor min(3, N),
# min.insync.replicas min(2, N). Heap: EPP_KAFKA_HEAP (default 512m) per node.
#
# Readiness is a metadata answer that lists every node -- an open port is not readiness.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/scripts/kafka
CACHE=${EPP_KAFKA_CACHE:-$REPO/.cache/kafka}
SUMS=${EPP_KAFKA_SUMS:-$HERE/SHA256SUMS} # a test points this at a tampered copy
HEAP=${EPP_KAFKA_HEAP:-512m}
STOP_GRACE=${EPP_KAFKA_STOP_GRACE:-20}
START_TIMEOUT=${EPP_KAFKA_START_TIMEOUT:-90}
# shellcheck source=scripts/lib/pidfile.sh
. "$REPO/scripts/lib/pidfile.sh" # pid_running: a node's exit is waited for by its process

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}

say() { echo "kafka.sh: $*"; }

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

kafka_version() {
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml"
}

LIBS=$CACHE/$(kafka_version)/libs

# ----------------------------------------------------------------------------------------------
# fetch
# ----------------------------------------------------------------------------------------------

# Succeeds when LIBS holds exactly the jars of SHA256SUMS, each with its sum.
verify_libs() {
    [ -d "$LIBS" ] || return 1
    local want have
    want=$(awk '{print $2}' "$SUMS" | sort)
    have=$(find "$LIBS" -maxdepth 1 -name '*.jar' -printf '%f\n' | sort)
    if [ "$want" != "$have" ]; then
        echo "kafka.sh: the jar set in $LIBS differs from scripts/kafka/SHA256SUMS:" >&2
        diff <(echo "$want") <(echo "$have") | sed -n 's/^[<>]/  &/p' >&2 || true
        return 1
    fi
    (cd "$LIBS" && sha256sum --quiet -c "$SUMS") >&2
}

cmd_fetch() {
    if [ -d "$LIBS" ] && verify_libs 2>/dev/null; then
        say "Apache Kafka $(kafka_version): $(wc -l <"$SUMS") jars verified in $LIBS"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (scripts/install-deps.sh installs maven)"
    command -v java >/dev/null || die "java not found (scripts/install-deps.sh installs openjdk-17-jre-headless)"
    local tmp
    tmp=$(mktemp -d "$CACHE.fetch.XXXXXX" 2>/dev/null) || {
        mkdir -p "$CACHE"
        tmp=$(mktemp -d "$CACHE.fetch.XXXXXX")
    }
    say "fetching Apache Kafka $(kafka_version) from Maven Central into $LIBS"
    if ! mvn -q -B -f "$HERE/pom.xml" -Dmaven.repo.local="$tmp/m2" \
        dependency:copy-dependencies -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
        tail -n 30 "$tmp/mvn.log" >&2
        rm -rf "$tmp"
        die "maven could not fetch the broker (log above)"
    fi
    rm -rf "$LIBS"
    mkdir -p "$(dirname "$LIBS")"
    mv "$tmp/libs" "$LIBS"
    rm -rf "$tmp"
    verify_libs || die "CHECKSUM MISMATCH: the fetched jars are not the pinned ones (scripts/kafka/SHA256SUMS); refusing to run them"
    say "Apache Kafka $(kafka_version): $(wc -l <"$SUMS") jars fetched and verified"
}

classpath() {
    verify_libs || die "broker jars missing or not verified: run scripts/kafka.sh fetch"
    local cp="" j
    for j in "$LIBS"/*.jar; do cp+="$j:"; done
    echo "${cp%:}"
}

# ----------------------------------------------------------------------------------------------
# Cluster layout: DIR/cluster.conf holds NODES, CLUSTER_ID and per node BROKER_PORT_K and
# CONTROLLER_PORT_K; DIR/node-K/ holds server.properties, data/, kafka.log and kafka.pid.
# ----------------------------------------------------------------------------------------------

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port -> a port free a moment ago, below the kernel's ephemeral range (scripts/lib/free_port.py,
# the picker the tests and benches use too).
free_port() {
    python3 "$REPO/scripts/lib/free_port.py"
}

load_conf() {
    local dir=$1
    [ -f "$dir/cluster.conf" ] || die "no cluster in $dir (scripts/kafka.sh start $dir first)"
    # shellcheck disable=SC1091 # written by this script
    . "$dir/cluster.conf"
}

node_port() { # node_port BROKER|CONTROLLER K
    local v="${1}_PORT_$2"
    echo "${!v:-}"
}

bootstrap_of() {
    local k out=""
    for ((k = 1; k <= NODES; k++)); do out+="127.0.0.1:$(node_port BROKER "$k"),"; done
    echo "${out%,}"
}

# Prints node K's pid when it is a live (not zombie) broker of this DIR.
node_pid() {
    local dir=$1 k=$2 pid
    pid=$(cat "$dir/node-$k/kafka.pid" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/node-$k/server.properties" || return 1
    pid_running "$pid" || return 1
    echo "$pid"
}

write_conf() {
    local dir=$1 k
    {
        echo "NODES=$NODES"
        echo "CLUSTER_ID=$CLUSTER_ID"
        for ((k = 1; k <= NODES; k++)); do
            echo "BROKER_PORT_$k=$(node_port BROKER "$k")"
            echo "CONTROLLER_PORT_$k=$(node_port CONTROLLER "$k")"
        done
    } >"$dir/cluster.conf.tmp"
    mv "$dir/cluster.conf.tmp" "$dir/cluster.conf"
}

write_node_properties() {
    local dir=$1 k=$2 voters="" j rf isr
    for ((j = 1; j <= NODES; j++)); do voters+="$j@127.0.0.1:$(node_port CONTROLLER "$j"),"; done
    rf=$((NODES < 3 ? NODES : 3))
    isr=$((NODES < 2 ? NODES : 2))
    mkdir -p "$dir/node-$k/data"
    cat >"$dir/node-$k/server.properties" <<EOF
# Written by scripts/kafka.sh for node $k of $NODES; rewritten at every start.
process.roles=broker,controller
node.id=$k
controller.quorum.voters=${voters%,}
listeners=PLAINTEXT://127.0.0.1:$(node_port BROKER "$k"),CONTROLLER://127.0.0.1:$(node_port CONTROLLER "$k")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port BROKER "$k")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/node-$k/data
auto.create.topics.enable=false
num.partitions=$((NODES == 1 ? 4 : 6))
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# Tests and make run join groups right after start: no 3 s wait for more members.
group.initial.rebalance.delay.ms=0
unclean.leader.election.enable=false
EOF
    # Settings given with start --config (the chaos suite's retention check interval, which a
    # broker cannot change at run time); later lines win over the ones above.
    if [ -f "$dir/extra.properties" ]; then
        cat "$dir/extra.properties" >>"$dir/node-$k/server.properties"
    fi
}

start_jvm() {
    local dir=$1 k=$2 cp=$3 pid
    # Its own session, so a Ctrl-C in the terminal reaches only the script that owns the cluster
    # (scripts/run.sh), which stops it in order.
    setsid java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$HERE/log4j2.yaml" \
        -cp "$cp" kafka.Kafka "$dir/node-$k/server.properties" \
        </dev/null >>"$dir/node-$k/kafka.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/node-$k/kafka.pid"
}

# The node ids a metadata request to bootstrap lists, one per line; nothing when no broker answers.
brokers_listed() {
    kcat -b "$1" -L -m 3 2>/dev/null | sed -n 's/^ *broker \([0-9][0-9]*\) at .*/\1/p' | sort -u
}

# Waits until each node in "$@" answers a metadata request itself and lists every node in "$@"
# (a broker serves requests only once the controller has unfenced it; asking the node itself, not
# the cluster, matters right after a kill: the others keep listing a dead node until its session
# times out). Fails early when one of them dies.
wait_listed() {
    local dir=$1 deadline k j listed missing
    shift
    deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        missing=0
        for k in "$@"; do
            if ! node_pid "$dir" "$k" >/dev/null; then
                echo "kafka.sh: node $k exited during start-up; last lines of $dir/node-$k/kafka.log:" >&2
                tail -n 25 "$dir/node-$k/kafka.log" >&2 || true
                return 1
            fi
            listed=" $(brokers_listed "127.0.0.1:$(node_port BROKER "$k")" | tr '\n' ' ')"
            for j in "$@"; do [[ "$listed" == *" $j "* ]] || missing=1; done
        done
        [ "$missing" = 0 ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            echo "kafka.sh: node(s) $* of $dir not serving within $START_TIMEOUT s" >&2
            return 1
        fi
        sleep 0.3
    done
}

cmd_start() {
    [ $# -ge 1 ] || usage
    local dir=$1 nodes="" port="" k cp extra=()
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
        --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
        --port) port=${2:?--port needs a value}; shift 2 ;;
        --config)
            [[ "${2:-}" =~ ^[a-z][a-z0-9._-]*=[^[:space:]]*$ ]] || die "--config wants KEY=VALUE, got '${2:-}'"
            extra+=("$2")
            shift 2
            ;;
        *) usage ;;
        esac
    done
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if [ ${#extra[@]} -gt 0 ]; then
        printf '%s\n' "# start --config" "${extra[@]}" >"$dir/extra.properties"
    fi
    command -v kcat >/dev/null || die "kcat not found (scripts/install-deps.sh installs it)"
    cp=$(classpath)

    if [ -f "$dir/cluster.conf" ]; then
        load_conf "$dir"
        [ -z "$nodes" ] || [ "$nodes" = "$NODES" ] ||
            die "$dir holds a $NODES-node cluster; --nodes $nodes would need a new DIR"
    else
        NODES=${nodes:-1}
        [ "$NODES" = 1 ] || [ "$NODES" = 3 ] || die "--nodes must be 1 or 3"
        CLUSTER_ID=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        [ -n "$CLUSTER_ID" ] || die "could not make a cluster id (is Java 17 installed?)"
    fi
    for ((k = 1; k <= NODES; k++)); do
        if node_pid "$dir" "$k" >/dev/null; then
            die "node $k of $dir is already running (pid $(node_pid "$dir" "$k")); stop it first"
        fi
    done

    # Ports: keep the recorded ones while free (clients and logs keep making sense), else pick
    # new ones; --port asks for node 1's broker port (make run asks for 9092).
    local used=" " p
    for ((k = 1; k <= NODES; k++)); do
        for kind in BROKER CONTROLLER; do
            p=$(node_port "$kind" "$k")
            if [ "$kind$k" = BROKER1 ] && [ -n "$port" ]; then
                p=$port
                port_busy "$p" && die "port $p is in use"
            fi
            if [ -z "$p" ] || port_busy "$p" || [[ "$used" == *" $p "* ]]; then
                p=$(free_port)
                while [[ "$used" == *" $p "* ]]; do p=$(free_port); done
            fi
            used+="$p "
            printf -v "${kind}_PORT_$k" '%s' "$p"
        done
    done
    write_conf "$dir"

    # Formatting is a JVM start per node: in parallel.
    local fmt=()
    for ((k = 1; k <= NODES; k++)); do
        write_node_properties "$dir" "$k"
        if [ ! -f "$dir/node-$k/data/meta.properties" ]; then
            java -cp "$cp" -Dlog4j2.configurationFile="$HERE/log4j2.yaml" kafka.tools.StorageTool \
                format -t "$CLUSTER_ID" -c "$dir/node-$k/server.properties" \
                >>"$dir/node-$k/kafka.log" 2>&1 &
            fmt+=("$!:$k")
        fi
    done
    for f in "${fmt[@]}"; do
        wait "${f%%:*}" || die "formatting node ${f##*:} failed; see $dir/node-${f##*:}/kafka.log"
    done
    for ((k = 1; k <= NODES; k++)); do start_jvm "$dir" "$k" "$cp"; done

    if ! wait_listed "$dir" $(seq 1 "$NODES"); then
        cmd_stop "$dir" >/dev/null 2>&1 || true
        die "start failed; logs in $dir/node-*/kafka.log"
    fi
    say "Apache Kafka $(kafka_version), $NODES node(s) in $dir"
    echo "KAFKA_BOOTSTRAP_SERVERS=$(bootstrap_of)"
}

# Sends sig to node K and waits up to grace seconds for it to exit; SIGKILL after that.
stop_node() {
    local dir=$1 k=$2 sig=$3 grace=$4 pid i
    pid=$(node_pid "$dir" "$k") || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        pid_running "$pid" || return 0
        sleep 0.1
    done
    echo "kafka.sh: node $k ($pid) still running after ${grace} s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    # SIGCONT too: a node stopped with SIGSTOP by a fault test cannot act on SIGKILL's delivery
    # until the kernel reaps it, which it does; this only makes the intent plain.
    kill -CONT "$pid" 2>/dev/null || true
    while pid_running "$pid"; do sleep 0.05; done
}

cmd_stop() {
    [ $# -ge 1 ] || usage
    local dir=$1 k pids=()
    [ -f "$dir/cluster.conf" ] || return 0
    dir=$(cd "$dir" && pwd -P)
    load_conf "$dir"
    # All at once: nodes stopped one by one would each wait for a controller quorum that the
    # previous stops already took away.
    for ((k = 1; k <= NODES; k++)); do
        pid=$(node_pid "$dir" "$k") || continue
        kill -CONT "$pid" 2>/dev/null || true
        stop_node "$dir" "$k" TERM "$STOP_GRACE" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    rm -f "$dir"/node-*/kafka.pid
    say "stopped the cluster in $dir"
}

cmd_status() {
    [ $# -ge 1 ] || usage
    local dir=$1 k down=0
    [ -f "$dir/cluster.conf" ] || {
        say "no cluster in $dir"
        return 3
    }
    dir=$(cd "$dir" && pwd -P)
    load_conf "$dir"
    for ((k = 1; k <= NODES; k++)); do
        if node_pid "$dir" "$k" >/dev/null; then
            say "node $k running, pid $(node_pid "$dir" "$k"), 127.0.0.1:$(node_port BROKER "$k")"
        else
            say "node $k not running"
            down=1
        fi
    done
    [ "$down" = 0 ] || return 3
}

node_arg() {
    local dir=$1 k=$2
    [ -f "$dir/cluster.conf" ] || die "no cluster in $dir"
    load_conf "$dir"
    if ! [[ "$k" =~ ^[0-9]+$ ]] || [ "$k" -lt 1 ] || [ "$k" -gt "$NODES" ]; then
        die "no node $k (1..$NODES)"
    fi
}

cmd_kill() {
    [ $# -eq 2 ] || usage
    local dir pid
    dir=$(cd "$1" && pwd -P)
    node_arg "$dir" "$2"
    pid=$(node_pid "$dir" "$2") || die "node $2 is not running"
    kill -KILL "$pid"
    while node_pid "$dir" "$2" >/dev/null; do sleep 0.05; done
    say "node $2 ($pid) killed"
}

cmd_stop_node() {
    [ $# -eq 2 ] || usage
    local dir
    dir=$(cd "$1" && pwd -P)
    node_arg "$dir" "$2"
    stop_node "$dir" "$2" TERM "$STOP_GRACE"
    say "node $2 stopped"
}

cmd_start_node() {
    [ $# -ge 2 ] || usage
    local dir k=$2 cp
    dir=$(cd "$1" && pwd -P)
    node_arg "$dir" "$k"
    node_pid "$dir" "$k" >/dev/null && die "node $k is already running"
    cp=$(classpath)
    # The node comes back on its recorded ports: the others' quorum configuration names them.
    port_busy "$(node_port BROKER "$k")" && die "node $k's port $(node_port BROKER "$k") is taken"
    write_node_properties "$dir" "$k"
    start_jvm "$dir" "$k" "$cp"
    # --no-wait: when too few controllers are up for a quorum, the node cannot register until
    # another one starts too.
    if [ "${3:-}" != --no-wait ]; then
        wait_listed "$dir" "$k" || die "node $k did not come back; see $dir/node-$k/kafka.log"
    fi
    say "node $k running, pid $(node_pid "$dir" "$k")"
}

cmd_pid() {
    [ $# -eq 2 ] || usage
    local dir
    dir=$(cd "$1" && pwd -P)
    node_arg "$dir" "$2"
    node_pid "$dir" "$2" || die "node $2 is not running"
}

cmd_bootstrap() {
    [ $# -eq 1 ] || usage
    load_conf "$1"
    bootstrap_of
}

[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
fetch) cmd_fetch ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
bootstrap) cmd_bootstrap "$@" ;;
kill) cmd_kill "$@" ;;
stop-node) cmd_stop_node "$@" ;;
start-node) cmd_start_node "$@" ;;
pid) cmd_pid "$@" ;;
version) kafka_version ;;
*) usage ;;
esac
