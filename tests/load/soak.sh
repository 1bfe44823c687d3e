#!/usr/bin/env bash
# A mixed soak of Relai: lookups, feeds, Server-Sent Events subscribers and writes at once
# for a while (five minutes by default), then: every request must have succeeded, every
# subscriber must still be connected, and resident memory must be flat.
#
#   tests/load/soak.sh [SECONDS]        # RELAI_BIN and LOADGEN_BIN skip the build
#
# Exit status 0 when all of that holds; the figures go to standard output (markdown).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
SECONDS_TOTAL=${1:-300}
PORT=${SOAK_PORT:-18490}
SUBSCRIBERS=${SOAK_SUBSCRIBERS:-50}
WRITE_RATE=${SOAK_WRITE_RATE:-20}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"

if [ -z "${RELAI_BIN:-}" ]; then
    (cd "$REPO" && cargo build --release --quiet --bin relai --examples)
    RELAI_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/relai
fi
LOADGEN_BIN=${LOADGEN_BIN:-$(dirname "$RELAI_BIN")/examples/loadgen}

TMP=$(mktemp -d /tmp/relai-soak.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

relai() { "$RELAI_BIN" --data-dir "$TMP/data" "$@"; }
relai seed --demo >"$TMP/seed.log" 2>&1
org=$(relai org create --name "Soak" --kind ministry --scope '*:national:FR' | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n1)
account=$(relai account create --org "$org" --role authority --name "Soak" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -n1)
TOKEN=$(relai token issue --account "$account" --ttl 2h)
[ -n "$TOKEN" ] || die "no token"

RELAI_PUBLIC_RATE_LIMIT=0 RELAI_LOG=warn "$RELAI_BIN" --data-dir "$TMP/data" serve \
    --bind "127.0.0.1:$PORT" --workers 2 >"$TMP/serve.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do
    curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$BASE/readyz" >/dev/null || die "relai did not start (see $TMP/serve.log)"
log "relai serve ready (pid $SERVER); soaking for ${SECONDS_TOTAL}s"

# Live subscribers: each must still be connected at the end.
for i in $(seq 1 "$SUBSCRIBERS"); do
    curl -sN "$BASE/v1/events" >"$TMP/sse-$i.txt" 2>/dev/null &
    PIDS+=("$!")
done

# Lookups over every postcode, 16 connections.
cut -d, -f1 "$REPO/seed-data/postcodes.csv" | tail -n +2 | sort -u >"$TMP/postcodes.txt"
wrk -t1 -c16 -d"${SECONDS_TOTAL}s" --timeout 10s -s "$SCRIPT_DIR/lookup.lua" "$BASE" \
    -- "$TMP/postcodes.txt" >"$TMP/wrk.txt" 2>&1 &
WRK=$!
PIDS+=("$WRK")

# Writes: publishes and retires through the API.
RELAI_BENCH_TOKEN=$TOKEN "$LOADGEN_BIN" writes --base "$BASE" --seed-data "$REPO/seed-data" \
    --rate "$WRITE_RATE" --duration "${SECONDS_TOTAL}s" >"$TMP/writes.txt" 2>&1 &
WRITES=$!
PIDS+=("$WRITES")

# Feeds, in a loop: every answer must be 200.
(
    end=$((SECONDS + SECONDS_TOTAL))
    ok=0 failed=0
    while [ $SECONDS -lt $end ]; do
        for path in /v1/feed.atom /v1/cap/feed.atom /v1/numbers.geojson /v1/departements.geojson \
            /v1/outages /v1/numbers.csv "/v1/numbers?limit=100" /; do
            code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE$path")
            if [ "$code" = 200 ]; then ok=$((ok + 1)); else failed=$((failed + 1)); echo "$path $code" >>"$TMP/feed-failures.txt"; fi
        done
        sleep 0.2
    done
    echo "$ok $failed" >"$TMP/feeds.txt"
) &
FEEDS=$!
PIDS+=("$FEEDS")

# Resident memory every 10 s.
: >"$TMP/rss.txt"
elapsed=0
while [ $elapsed -lt "$SECONDS_TOTAL" ]; do
    sleep 10
    elapsed=$((elapsed + 10))
    rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$SERVER/status")
    echo "$elapsed $rss" >>"$TMP/rss.txt"
done
wait "$WRK" "$WRITES" "$FEEDS" || true

fail=0
wrk_line=$(grep WRK_RESULT "$TMP/wrk.txt" || true)
[ -n "$wrk_line" ] || { cat "$TMP/wrk.txt" >&2; die "wrk printed no result"; }
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<"$2"; }
non2xx=$(field non2xx "$wrk_line")
sockerr=$(($(field connect_errors "$wrk_line") + $(field read_errors "$wrk_line") + $(field write_errors "$wrk_line") + $(field timeouts "$wrk_line")))
rps=$(field rps "$wrk_line")
writes_line=$(grep WRITES_RESULT "$TMP/writes.txt" || true)
write_errors=$(field errors "$writes_line")
publishes=$(field publishes "$writes_line")
retires=$(field retires "$writes_line")
read -r feeds_ok feeds_failed <"$TMP/feeds.txt"
connected=0
for p in "${PIDS[@]:1:$SUBSCRIBERS}"; do kill -0 "$p" 2>/dev/null && connected=$((connected + 1)); done
events=$(cat "$TMP"/sse-*.txt | grep -c '^event: number' || true)
first_rss=$(awk 'NR == 3 {print $2}' "$TMP/rss.txt")   # after 30 s: warm
last_rss=$(awk 'END {print $2}' "$TMP/rss.txt")
max_rss=$(awk 'BEGIN {m = 0} {if ($2 > m) m = $2} END {print m}' "$TMP/rss.txt")

[ "${non2xx:-1}" = 0 ] && [ "${sockerr:-1}" = 0 ] || fail=1
[ "${write_errors:-1}" = 0 ] || fail=1
[ "$feeds_failed" = 0 ] || fail=1
[ "$connected" = "$SUBSCRIBERS" ] || fail=1
# Flat: the last sample within 10% (and 16 MB) of the one after warm-up.
awk -v a="$first_rss" -v b="$last_rss" 'BEGIN {exit !(b <= a * 1.10 || b - a <= 16)}' || fail=1

cat <<EOF
### Soak, $(date +%Y-%m-%d) ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown))

${SECONDS_TOTAL} s, \`relai serve --workers 2\` (SQLite, demo loaded), all at once: wrk -c16 over every
postcode, ${WRITE_RATE} writes/s through the API (publish and retire), 8 feeds fetched in a loop,
${SUBSCRIBERS} Server-Sent Events subscribers.

| what | result |
|---|---|
| lookups | ${rps} req/s, non-2xx ${non2xx}, socket errors ${sockerr} |
| writes | ${publishes} publishes, ${retires} retires, errors ${write_errors} |
| feeds | ${feeds_ok} answered 200, ${feeds_failed} failed |
| SSE subscribers | ${connected} of ${SUBSCRIBERS} still connected, ${events} number events received in all |
| resident memory (MB) | ${first_rss} after 30 s, ${last_rss} at the end, ${max_rss} at most (every 10 s: $(awk '{printf "%s ", $2}' "$TMP/rss.txt")) |
| verdict | $([ $fail = 0 ] && echo "PASS: no failed request, memory flat" || echo FAIL) |
EOF
[ -f "$TMP/feed-failures.txt" ] && { log "feed failures:"; head -20 "$TMP/feed-failures.txt" >&2; }
exit $fail
