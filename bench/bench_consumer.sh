#!/usr/bin/env bash
# bench_consumer: epp-consumer's insert rate on five workloads against `psql \copy` of exactly the
# same rows into the same fresh schema, in the same run; its end-to-end latency; its recovery
# after a burst. The workloads and phases are described in bench/consumer_bench.py.
#
# A private Postgres cluster (scripts/pg.sh, default durability, track_commit_timestamp on for
# the latency phase) and a private broker: Apache Kafka (scripts/kafka.sh, BENCH_CONSUMER_NODES
# 1 or 3) by default, the dev broker with BENCH_CONSUMER_BROKER=dev (it keeps ~5 MiB per
# partition, so only `live` fits in it: the default workload there).
#
# Env: EPP_BUILD_DIR, BENCH_CONSUMER_EVENTS (1000000), BENCH_CONSUMER_WORKLOADS (all: live,
# ingest-24,backfill,few-partitions,fat), BENCH_CONSUMER_ROUNDS (3), BENCH_CONSUMER_FAT_SHARE
# (0.25), BENCH_CONSUMER_BROKER (kafka|dev), BENCH_CONSUMER_NODES (1), BENCH_CONSUMER_LATENCY (1),
# BENCH_CONSUMER_RATE (20000), BENCH_CONSUMER_SECONDS (10), BENCH_CONSUMER_ENV ("KEY=VALUE ..."
# extra consumer settings, e.g. CONSUMER_WRITERS=3), BENCH_CONSUMER_PROFILE (0; 1: where the time
# goes in Postgres, per round).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=$(cd "${EPP_BUILD_DIR:-build}" && pwd)
export EPP_BUILD_DIR=$BUILD
for b in epp-consumer epp-ingest epp-load epp-devbroker; do
    [ -x "$BUILD/bin/$b" ] || { echo "bench_consumer: $BUILD/bin/$b not built"; exit 1; }
done
command -v psql >/dev/null || { echo "bench_consumer: psql not installed"; exit 1; }

TMP=$(mktemp -d /tmp/epp-bench-consumer.XXXXXX)
chmod 755 "$TMP" # the postgres user reads nothing here, but psql's \copy runs as us
cleanup() {
    bash "$REPO/scripts/pg.sh" stop "$TMP/pg" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

PG_PORT=$(python3 scripts/lib/free_port.py)
bash scripts/pg.sh start "$TMP/pg" "$PG_PORT" >/dev/null
# Commit timestamps, for the latency phase: when each row became visible.
psql -X -q "postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres" \
    -c "ALTER SYSTEM SET track_commit_timestamp = on" >/dev/null
if [ "${BENCH_CONSUMER_PROFILE:-0}" = 1 ]; then
    psql -X -q "postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres" \
        -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" \
        -c "ALTER SYSTEM SET log_lock_waits = on" -c "ALTER SYSTEM SET deadlock_timeout = '10ms'" \
        >/dev/null
fi
bash scripts/pg.sh restart "$TMP/pg" fast >/dev/null
if [ "${BENCH_CONSUMER_PROFILE:-0}" = 1 ]; then
    # Statements inside the rollup totals' trigger functions too (known once the library is in).
    psql -X -q "postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres" \
        -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" -c "SELECT pg_reload_conf()" \
        >/dev/null
fi
export BENCH_PG_ADMIN="postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres"
export BENCH_TMP=$TMP
export BENCH_PG_LOG=$TMP/pg/server.log
/usr/bin/python3 bench/consumer_bench.py
