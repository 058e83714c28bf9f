#!/usr/bin/env bash
# `make run`: the whole platform on this machine, in the foreground.
#
#   scripts/run.sh [BUILD_DIR]        (default: build)
#
# Starts a throwaway Postgres (data in $EPP_RUN_DIR/pg, port 5432 or the next free one), a
# single-node Apache Kafka (data in $EPP_RUN_DIR/kafka, kept across runs: events accepted while
# the consumer was down are stored at the next run; port 9092 or the next free one), then
# whichever services are built in BUILD_DIR/bin: epp-consumer first (it applies the migrations
# and creates the topics), then epp-ingest and epp-analytics. Prints the URLs and waits. Ctrl-C
# (SIGINT) or SIGTERM stops everything in order -- services, broker, Postgres -- and leaves
# nothing behind.
#
# Overrides (environment): EPP_RUN_DIR (default .run), EPP_PG_PORT (default 5432; when busy, the
# next free port is used and printed), EPP_KAFKA_PORT (default 9092, likewise), INGEST_PORT
# (8001), ANALYTICS_PORT (8002), CONSUMER_PORT (8003), EPP_BROKER=dev (librdkafka's in-memory
# mock cluster instead of Kafka, for a machine without Java; it keeps only ~5 MiB per partition
# and nothing across runs), EPP_BROKER_ARGS (extra epp-devbroker flags, e.g. "--brokers 3"),
# LOG_LEVEL, LOG_FORMAT. Service logs: $EPP_RUN_DIR/logs/<program>.log; Kafka's:
# $EPP_RUN_DIR/kafka/node-1/kafka.log.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$REPO/build}" && pwd)
RUN_DIR=${EPP_RUN_DIR:-$REPO/.run}
mkdir -p "$RUN_DIR/logs"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
LOGS=$RUN_DIR/logs
BROKER=${EPP_BROKER:-kafka}
case "$BROKER" in
kafka | dev) ;;
*)
    echo "run: EPP_BROKER must be kafka (the default) or dev, not '$BROKER'" >&2
    exit 1
    ;;
esac
INGEST_PORT=${INGEST_PORT:-8001}
ANALYTICS_PORT=${ANALYTICS_PORT:-8002}
CONSUMER_PORT=${CONSUMER_PORT:-8003}

say() { echo "run: $*"; }

port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the first free port from $1 upwards, saying so (on stderr) when it is not $1 itself.
first_free_port() {
    local port=$1
    while port_busy "$port"; do port=$((port + 1)); done
    [ "$port" = "$1" ] || say "port $1 is busy: $2 uses port $port" >&2
    echo "$port"
}

# ----------------------------------------------------------------------------------------------
# Stopping, in reverse order. Runs once, on Ctrl-C, SIGTERM, an error, or a normal exit.
# ----------------------------------------------------------------------------------------------
SVC_NAMES=()
SVC_PIDS=()
PG_STARTED=0
BROKER_STARTED=0
STOPPING=0

stop_all() {
    [ "$STOPPING" = 1 ] && return
    STOPPING=1
    trap '' INT TERM
    echo
    local i pid name
    for ((i = ${#SVC_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SVC_PIDS[$i]}
        name=${SVC_NAMES[$i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 150); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                say "$name ($pid) did not stop in 15 s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        wait "$pid" 2>/dev/null || true
        say "stopped $name"
    done
    if [ "$BROKER_STARTED" = 1 ]; then
        if [ "$BROKER" = kafka ]; then
            bash "$REPO/scripts/kafka.sh" stop "$RUN_DIR/kafka" | sed 's/^kafka.sh: /run: kafka: /' || true
        else
            bash "$REPO/scripts/broker.sh" stop "$RUN_DIR" | sed 's/^broker.sh: /run: /' || true
        fi
    fi
    if [ "$PG_STARTED" = 1 ]; then
        bash "$REPO/scripts/pg.sh" stop "$RUN_DIR/pg" | sed 's/^pg.sh: /run: postgres /' || true
    fi
    say "all stopped"
}

on_signal() {
    stop_all
    exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

# ----------------------------------------------------------------------------------------------
# Checks before starting anything
# ----------------------------------------------------------------------------------------------
SERVICES=()
for spec in "epp-consumer:$CONSUMER_PORT" "epp-ingest:$INGEST_PORT" "epp-analytics:$ANALYTICS_PORT"; do
    name=${spec%%:*}
    port=${spec##*:}
    if [ -x "$BUILD/bin/$name" ]; then
        if port_busy "$port"; then
            echo "run: port $port (for $name) is in use; stop what holds it or set a *_PORT override" >&2
            exit 1
        fi
        SERVICES+=("$spec")
    else
        say "$name is not built yet ($BUILD/bin/$name): skipped"
    fi
done
if [ "$BROKER" = dev ]; then
    [ -x "$BUILD/bin/epp-devbroker" ] || {
        echo "run: $BUILD/bin/epp-devbroker is not built" >&2
        exit 1
    }
else
    bash "$REPO/scripts/kafka.sh" fetch | sed 's/^kafka.sh: /run: kafka: /'
fi

# Leftovers from a run that was killed without its cleanup.
bash "$REPO/scripts/broker.sh" stop "$RUN_DIR" >/dev/null || true
bash "$REPO/scripts/kafka.sh" stop "$RUN_DIR/kafka" >/dev/null || true
bash "$REPO/scripts/pg.sh" stop "$RUN_DIR/pg" >/dev/null || true

# ----------------------------------------------------------------------------------------------
# Postgres
# ----------------------------------------------------------------------------------------------
PG_PORT=$(first_free_port "${EPP_PG_PORT:-5432}" Postgres)
PG_STARTED=1
setsid bash "$REPO/scripts/pg.sh" start "$RUN_DIR/pg" "$PG_PORT" </dev/null | sed 's/^pg.sh: /run: postgres /'
export DATABASE_URL="postgresql://postgres:postgres@127.0.0.1:$PG_PORT/events_db"

# ----------------------------------------------------------------------------------------------
# Kafka: one Apache Kafka node, or with EPP_BROKER=dev the dev broker
# ----------------------------------------------------------------------------------------------
BROKER_STARTED=1
if [ "$BROKER" = kafka ]; then
    KAFKA_PORT=$(first_free_port "${EPP_KAFKA_PORT:-9092}" Kafka)
    out=$(bash "$REPO/scripts/kafka.sh" start "$RUN_DIR/kafka" --port "$KAFKA_PORT" </dev/null) || {
        echo "run: Kafka did not start; its log: $RUN_DIR/kafka/node-1/kafka.log" >&2
        exit 1
    }
    KAFKA_BOOTSTRAP_SERVERS=${out##*KAFKA_BOOTSTRAP_SERVERS=}
    BROKER_LINE="kafka              $KAFKA_BOOTSTRAP_SERVERS  (Apache Kafka $(bash "$REPO/scripts/kafka.sh" version), 1 node)"
else
    # shellcheck disable=SC2086 # EPP_BROKER_ARGS is a list of flags
    EPP_DEVBROKER="$BUILD/bin/epp-devbroker" bash "$REPO/scripts/broker.sh" start "$RUN_DIR" -- \
        ${EPP_BROKER_ARGS:-} | sed 's/^broker.sh: /run: /'
    KAFKA_BOOTSTRAP_SERVERS=$(cat "$RUN_DIR/devbroker.addr")
    BROKER_LINE="kafka (dev broker) $KAFKA_BOOTSTRAP_SERVERS  (librdkafka's mock cluster; control: $(cat "$RUN_DIR/devbroker.control"))"
fi
say "${BROKER_LINE}"
export KAFKA_BOOTSTRAP_SERVERS

# ----------------------------------------------------------------------------------------------
# Services
# ----------------------------------------------------------------------------------------------
wait_healthy() {
    local name=$1 pid=$2 port=$3 i
    for i in $(seq 1 300); do
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run: $name exited during start-up; last lines of $LOGS/$name.log:" >&2
            tail -n 20 "$LOGS/$name.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "run: $name not healthy on port $port after 30 s; log: $LOGS/$name.log" >&2
    return 1
}

# The consumer's group join takes a few seconds after /health answers; until its partitions are
# assigned, events are safe in Kafka but not yet in Postgres. Waiting for it here means that
# events sent once "epp is running" is printed are stored within a second.
wait_consumer_assigned() {
    local log=$1 from=$2 i
    for i in $(seq 1 300); do
        if tail -c +"$((from + 1))" "$log" 2>/dev/null | grep -q "partitions assigned"; then
            say "epp-consumer has its partitions: events sent from now on are stored at once"
            return 0
        fi
        sleep 0.1
    done
    say "epp-consumer has no partitions after 30 s (see $log); events wait in Kafka until it has"
}

CONSUMER_LOG_FROM=
for spec in "${SERVICES[@]}"; do
    name=${spec%%:*}
    port=${spec##*:}
    [ "$name" = epp-consumer ] && CONSUMER_LOG_FROM=$(stat -c %s "$LOGS/$name.log" 2>/dev/null || echo 0)
    # Own session: the terminal's Ctrl-C reaches only this script, which stops services first.
    HTTP_PORT=$port setsid "$BUILD/bin/$name" </dev/null >>"$LOGS/$name.log" 2>&1 &
    SVC_NAMES+=("$name")
    SVC_PIDS+=("$!")
    wait_healthy "$name" "$!" "$port" || exit 1
    say "started $name (pid $!, port $port)"
done
if [ -n "$CONSUMER_LOG_FROM" ] && [[ ${LOG_LEVEL:-info} =~ ^(debug|info)$ ]]; then
    wait_consumer_assigned "$LOGS/epp-consumer.log" "$CONSUMER_LOG_FROM"
fi

cat <<EOF

  epp is running (logs in $LOGS/):
    ingest             http://localhost:$INGEST_PORT/events
    analytics          http://localhost:$ANALYTICS_PORT
    dashboard          http://localhost:$ANALYTICS_PORT/dashboard
    consumer metrics   http://localhost:$CONSUMER_PORT/metrics
    postgres           $DATABASE_URL
    $BROKER_LINE

  Press Ctrl-C to stop everything.
EOF
[ ${#SERVICES[@]} -lt 3 ] && say "(some services are not built yet; their URLs will not answer)"

# Wait for a signal; note services that die on their own (once each).
declare -A REPORTED=()
while true; do
    sleep 1 &
    wait $! || true
    for i in "${!SVC_PIDS[@]}"; do
        pid=${SVC_PIDS[$i]}
        if [ -z "${REPORTED[$pid]:-}" ] && ! kill -0 "$pid" 2>/dev/null; then
            REPORTED[$pid]=1
            rc=0
            wait "$pid" 2>/dev/null || rc=$?
            say "${SVC_NAMES[$i]} exited (status $rc); see $LOGS/${SVC_NAMES[$i]}.log"
        fi
    done
done
