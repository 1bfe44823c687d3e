#!/usr/bin/env bash
# PostgreSQL stopped under read load: relai on PostgreSQL serves lookups (wrk) while the
# PostgreSQL server is stopped for STOP_SECONDS and started again. Expected: no failed
# read, writes 503 during, 201 after, no restart of relai.
#
#   tests/load/pg-outage.sh [STOP_SECONDS]     # needs pg_ctlcluster (Debian) and wrk
#
# It stops the machine's PostgreSQL cluster: run it by hand, never beside other work on it.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
STOP_SECONDS=${1:-30}
PORT=${OUTAGE_PORT:-18495}
PG_ADMIN=${OUTAGE_PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
DB=relai_outage
CLUSTER=${OUTAGE_CLUSTER:-$(pg_lsclusters -h | awk 'NR == 1 {print $1 " " $2}')}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
if [ -z "${RELAI_BIN:-}" ]; then
    (cd "$REPO" && cargo build --release --quiet --bin relai)
    RELAI_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/relai
fi

TMP=$(mktemp -d /tmp/relai-outage.XXXXXX)
SERVER=
cleanup() {
    # Whatever happened, PostgreSQL is left running.
    pg_ctlcluster $CLUSTER start 2>/dev/null || true
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
URL=${PG_ADMIN%/*}/$DB
relai() { "$RELAI_BIN" --data-dir "$TMP/data" --database-url "$URL" "$@"; }
relai seed --demo >"$TMP/seed.log" 2>&1
org=$(relai org create --name "Outage" --kind ministry --scope '*:national:FR' | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n1)
account=$(relai account create --org "$org" --role authority --name "Outage" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n1)
TOKEN=$(relai token issue --account "$account" --ttl 1h)

RELAI_PUBLIC_RATE_LIMIT=0 RELAI_LOG=warn "$RELAI_BIN" --data-dir "$TMP/data" --database-url "$URL" \
    serve --bind "127.0.0.1:$PORT" --workers 2 >"$TMP/serve.log" 2>&1 &
SERVER=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

publish() {
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' \
        -d "{\"service\":\"18\",\"territory\":{\"kind\":\"departement\",\"code\":\"33\"},\"phone\":\"05569$1\",\"label\":\"Panne\"}" \
        "$BASE/v1/numbers"
}

cut -d, -f1 "$REPO/seed-data/postcodes.csv" | tail -n +2 | sort -u >"$TMP/postcodes.txt"
total=$((STOP_SECONDS + 30))
wrk -t1 -c8 -d"${total}s" --timeout 10s -s "$SCRIPT_DIR/lookup.lua" "$BASE" -- "$TMP/postcodes.txt" \
    >"$TMP/wrk.txt" 2>&1 &
WRK=$!
sleep 10
before=$(publish 00001)
log "write before the stop: $before; stopping PostgreSQL ($CLUSTER) for ${STOP_SECONDS}s"
pg_ctlcluster $CLUSTER stop -m fast
during=()
stale=""
ready_during=""
for i in $(seq 1 $((STOP_SECONDS / 5))); do
    sleep 5
    during+=("$(publish "$(printf '%05d' $((100 + i)))")")
    [ -n "$stale" ] || stale=$(curl -s -D - -o /dev/null "$BASE/v1/lookup?postcode=33000" | grep -i '^relai-stale-since' | tr -d '\r' || true)
    ready_during=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")
done
pg_ctlcluster $CLUSTER start
started=$(date +%s.%N)
after=""
for i in $(seq 1 200); do
    after=$(publish "$(printf '%05d' $((500 + i)))")
    [ "$after" = 201 ] && break
    sleep 0.25
done
recovered=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
wait "$WRK" || true
line=$(grep WRK_RESULT "$TMP/wrk.txt")
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$line"; }
failed=$(($(field non2xx) + $(field connect_errors) + $(field read_errors) + $(field write_errors) + $(field timeouts)))
alive=$(kill -0 "$SERVER" 2>/dev/null && echo yes || echo no)

cat <<EOF
### PostgreSQL stopped for ${STOP_SECONDS} s under read load, $(date +%Y-%m-%d)

| what | result |
|---|---|
| lookups over ${total} s (wrk -c8) | $(field requests) answered, $failed failed |
| a write before the stop | $before |
| writes during (every 5 s) | ${during[*]} |
| \`/readyz\` during | $ready_during |
| lookup header during | ${stale:-none} |
| first write after the start | $after, ${recovered} s after \`pg_ctlcluster start\` returned |
| relai restarted | no (process alive: $alive) |
EOF
[ "$failed" = 0 ] && [ "$before" = 201 ] && [ "$after" = 201 ] && [ "$alive" = yes ] \
    && ! printf '%s\n' "${during[@]}" | grep -qv '^503$'
