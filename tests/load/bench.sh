#!/usr/bin/env bash
# The load benchmark of Relai: see tests/load/README.md.
#
#   tests/load/bench.sh [--quick] [--sizes 1000,10000,100000] [--duration 20s]
#                       [--connections 64] [--write-rate 200] [--slices 4]
#                       [--pg-url URL | --no-postgres]
#                       [--out FILE] [--keep]
#
# Starts a release `relai serve` (SQLite) seeded with all of France and a generated
# directory, measures lookups with wrk against relai and against nginx serving the same
# bytes, again under a steady stream of API writes, at every size; then publish throughput
# on SQLite and PostgreSQL. Server on core 0, clients on core 1. Prints a markdown summary
# with PASS/FAIL per target (the script reports; it does not fail on a missed target).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)

# ---------------------------------------------------------------- options

SIZES=${BENCH_SIZES:-1000,10000,100000}
DURATION=${BENCH_DURATION:-20s}
WARMUP=${BENCH_WARMUP:-2s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
WRITE_RATE=${BENCH_WRITE_RATE:-200}
SLICES=${BENCH_SLICES:-4}
WRITE_SIZE=${BENCH_WRITE_SIZE:-}
PUBLISH_CONCURRENCY=${BENCH_PUBLISH_CONCURRENCY:-32}
PUBLISH_DURATION=${BENCH_PUBLISH_DURATION:-10s}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_DB=relai_bench
NO_POSTGRES=${BENCH_NO_POSTGRES:-0}
PG_PIN=${BENCH_PG_PIN:-1}
RELAI_PORT=${BENCH_RELAI_PORT:-18480}
NGINX_PORT=${BENCH_NGINX_PORT:-18481}
OUT=${BENCH_OUT:-}
KEEP=${BENCH_KEEP:-0}
SERVER_CORE=${BENCH_SERVER_CORE:-0}
CLIENT_CORE=${BENCH_CLIENT_CORE:-1}

usage() {
    cat <<EOF
usage: tests/load/bench.sh [options]

  --quick                   sizes 1000 only, 5 s runs, 5 s publish runs: to try it
  --sizes LIST              numbers in force, comma-separated      [$SIZES]
  --duration D              each wrk run and the write stream       [$DURATION]
  --warmup D                a wrk run before each measured one      [$WARMUP]
  --connections C           wrk connections                         [$CONNECTIONS]
  --write-rate R            writes per second during the read run   [$WRITE_RATE]
  --slices K                relai against nginx, and reads under writes against reads
                            alone, in K alternating pairs of slices, --duration in all
                            each                                    [$SLICES]
  --write-size N            numbers in force for publish throughput [largest size]
  --publish-concurrency C   clients of the publish-throughput run   [$PUBLISH_CONCURRENCY]
  --publish-duration D      length of each publish-throughput run   [$PUBLISH_DURATION]
  --pg-url URL              PostgreSQL admin URL; the scratch database $PG_DB is
                            created and dropped there               [$PG_URL]
  --no-postgres             skip the PostgreSQL write-throughput run
  --pg-unpinned             leave a local PostgreSQL's processes where they are (by
                            default they join the server core for their run, and get
                            their affinity back after: storage is the server's side)
  --relai-port P, --nginx-port P                                    [$RELAI_PORT, $NGINX_PORT]
  --out FILE                also write the summary (markdown) to FILE
  --keep                    keep the temporary directory (logs, databases, nginx root)

Environment: RELAI_BIN and LOADGEN_BIN (skip the build), CARGO_TARGET_DIR, and BENCH_*
for every option (BENCH_SIZES, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_WRITE_RATE,
BENCH_PG_URL, BENCH_NO_POSTGRES=1, BENCH_OUT, BENCH_KEEP=1...).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick)
        SIZES=1000
        DURATION=5s
        PUBLISH_DURATION=5s
        ;;
    --sizes) SIZES=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --connections) CONNECTIONS=$2; shift ;;
    --write-rate) WRITE_RATE=$2; shift ;;
    --slices) SLICES=$2; shift ;;
    --write-size) WRITE_SIZE=$2; shift ;;
    --publish-concurrency) PUBLISH_CONCURRENCY=$2; shift ;;
    --publish-duration) PUBLISH_DURATION=$2; shift ;;
    --pg-url) PG_URL=$2; shift ;;
    --no-postgres) NO_POSTGRES=1 ;;
    --pg-unpinned) PG_PIN=0 ;;
    --relai-port) RELAI_PORT=$2; shift ;;
    --nginx-port) NGINX_PORT=$2; shift ;;
    --out) OUT=$2; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Seconds from 20s / 20 / 2m.
seconds() {
    case "$1" in
    *ms) die "durations are whole seconds here: $1" ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
    esac
}
DURATION_S=$(seconds "$DURATION")
WARMUP_S=$(seconds "$WARMUP")
PUBLISH_DURATION_S=$(seconds "$PUBLISH_DURATION")
[[ $SLICES =~ ^[1-9][0-9]*$ ]] || die "--slices: give a positive number"
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
[ "${#SIZE_LIST[@]}" -gt 0 ] || die "--sizes is empty"
for n in "${SIZE_LIST[@]}"; do
    [[ $n =~ ^[0-9]+$ ]] || die "--sizes: $n is not a number"
done
if [ -z "$WRITE_SIZE" ]; then
    WRITE_SIZE=$(printf '%s\n' "${SIZE_LIST[@]}" | sort -n | tail -1)
fi

# ---------------------------------------------------------------- tools and binaries

for tool in wrk nginx taskset curl awk; do
    command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is missing (Debian: apt-get install wrk nginx-light util-linux curl)"
done
if [ "$NO_POSTGRES" != 1 ] && ! command -v psql >/dev/null 2>&1; then
    die "psql is missing (Debian: postgresql-client), or pass --no-postgres"
fi

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
if [ -z "${RELAI_BIN:-}" ]; then
    log "building: cargo build --release --examples --bin relai"
    (cd "$REPO" && cargo build --release --examples --bin relai) >&2
    RELAI_BIN=$TARGET_DIR/release/relai
fi
LOADGEN_BIN=${LOADGEN_BIN:-$(dirname "$RELAI_BIN")/examples/loadgen}
[ -x "$RELAI_BIN" ] || die "no relai binary at $RELAI_BIN"
[ -x "$LOADGEN_BIN" ] || die "no loadgen at $LOADGEN_BIN (cargo build --release --examples)"

# ---------------------------------------------------------------- pinning

CORES=$(nproc)
if [ "$CORES" -ge 2 ]; then
    PIN_SERVER=(taskset -c "$SERVER_CORE")
    PIN_CLIENT=(taskset -c "$CLIENT_CORE")
    # This script and everything it starts stay on the client core, except the servers.
    taskset -cp "$CLIENT_CORE" $$ >/dev/null
    PINNING="server on core $SERVER_CORE, clients on core $CLIENT_CORE"
else
    PIN_SERVER=()
    PIN_CLIENT=()
    PINNING="NOT PINNED: only $CORES core(s); server and clients share it"
    log "WARNING: $PINNING"
fi

# ---------------------------------------------------------------- temp dir and cleanup

TMP=$(mktemp -d -t relai-bench.XXXXXX)
export PGOPTIONS='-c client_min_messages=warning'
RELAI_PID=
SMALL_PID=   # the smallest size's relai, kept for the growth comparison
NGINX_PID=
WRITER_PID=
PG_CREATED=0
PG_ADMIN_OK=0
PG_AFFINITY=()   # "pid:cpu-list" of the PostgreSQL processes pinned, to restore
PG_PINNED_NOTE="not pinned"

stop_pid() {
    local pid=$1
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# pin_postgres: a PostgreSQL running on this machine joins the server core for its
# publish run, like relai (the clients keep their core to themselves); backends started
# later inherit the postmaster's affinity. Its processes get their affinity back after.
pin_postgres() {
    local pid was
    [ "$PG_PIN" = 1 ] && [ ${#PIN_SERVER[@]} -gt 0 ] || return 0
    [[ $PG_URL =~ @(127\.0\.0\.1|localhost|\[::1\])[:/] ]] || { PG_PINNED_NOTE="not pinned (not on this machine)"; return 0; }
    for pid in $(pgrep -x postgres 2>/dev/null || true); do
        was=$(taskset -pc "$pid" 2>/dev/null | sed 's/.*: //') || continue
        if taskset -pc "$SERVER_CORE" "$pid" >/dev/null 2>&1; then
            PG_AFFINITY+=("$pid:$was")
        fi
    done
    if [ ${#PG_AFFINITY[@]} -gt 0 ]; then
        PG_PINNED_NOTE="pinned to the server core (core $SERVER_CORE) with relai"
    else
        PG_PINNED_NOTE="not pinned (cannot set its processes' affinity)"
    fi
    log "PostgreSQL: $PG_PINNED_NOTE (${#PG_AFFINITY[@]} processes)"
}

unpin_postgres() {
    local entry
    for entry in "${PG_AFFINITY[@]}"; do
        taskset -pc "${entry#*:}" "${entry%%:*}" >/dev/null 2>&1 || true
    done
    PG_AFFINITY=()
}

cleanup() {
    local status=$?
    set +e
    stop_pid "$WRITER_PID"
    stop_pid "$NGINX_PID"
    stop_pid "$RELAI_PID"
    stop_pid "$SMALL_PID"
    if [ "$PG_CREATED" = 1 ]; then
        psql "$PG_URL" -qAt -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
    fi
    unpin_postgres
    if [ "$KEEP" = 1 ] || [ "$status" != 0 ]; then
        log "temporary directory kept: $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# The value of key in a "KEY k=v k=v" line.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# awk arithmetic: calc EXPR [DECIMALS]
calc() { awk "BEGIN { printf \"%.${2:-1}f\", ($1) }"; }
# awk comparison: is EXPR true?
holds() { awk "BEGIN { exit !($1) }"; }
is_number() { [[ $1 =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Jiffies of one core from /proc/stat: busy (all but idle and iowait), total, and the
# part spent running processes (user, nice, system: not interrupts and softirqs, which the
# kernel charges to no process, e.g. loopback TCP delivery).
core_ticks() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t, $2 + $3 + $4 }' /proc/stat
}
# Percent busy of a core between two core_ticks outputs.
busy_percent() {
    local b1 t1 b2 t2
    read -r b1 t1 _ <<<"$1"
    read -r b2 t2 _ <<<"$2"
    calc "($t2 - $t1) > 0 ? 100 * ($b2 - $b1) / ($t2 - $t1) : 0" 0
}
# Percent of a core spent running processes between two core_ticks outputs.
task_percent() {
    local k1 t1 k2 t2
    read -r _ t1 k1 <<<"$1"
    read -r _ t2 k2 <<<"$2"
    calc "($t2 - $t1) > 0 ? 100 * ($k2 - $k1) / ($t2 - $t1) : 0" 0
}
# Percent of a core that a process used (its jiffies from proc_ticks) between two
# core_ticks outputs.
process_percent() {
    local t1 t2
    read -r _ t1 _ <<<"$1"
    read -r _ t2 _ <<<"$2"
    calc "($t2 - $t1) > 0 ? 100 * ($4 - $3) / ($t2 - $t1) : 0" 0
}

# CPU jiffies (user + system, all threads) used so far by processes and their children
# processes (nginx's worker).
proc_ticks() {
    local total=0 p kids
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
        kids=$(cat "/proc/$p/task/$p/children" 2>/dev/null || true)
        for k in $kids; do
            [ -r "/proc/$k/stat" ] && total=$((total + $(awk '{ print $14 + $15 }' "/proc/$k/stat")))
        done
    done
    echo "$total"
}

# Peak resident memory (VmHWM) of a process, in MB.
peak_rss_mb() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# Resets the peak (Linux 4.0 and later): from now on VmHWM is the peak since this call.
reset_peak_rss() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null || log "WARNING: cannot reset the peak RSS of pid $1; peaks include the setup"; }

wait_ready() {
    local url=$1 pid=$2 what=$3
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || die "$what exited while starting (see $TMP)"
        if curl -sf --noproxy '*' -o /dev/null "$url"; then return 0; fi
        sleep 0.1
    done
    die "$what did not answer $url within 60 s"
}

relai() { "$RELAI_BIN" "$@"; }
loadgen() { "${PIN_CLIENT[@]}" "$LOADGEN_BIN" "$@"; }

# run_wrk URL LABEL SERVER_PID [SECONDS [WARMUP_SECONDS]]: a warm-up, then the measured
# run (by default --duration and --warmup); prints the WRK_RESULT line with, appended, how
# busy the server and client cores were and how much of the server core the server
# process itself used (the rest went to other processes).
run_wrk() {
    local url=$1 label=$2 pid=$3 seconds=${4:-$DURATION_S} warmup=${5:-$WARMUP_S} out line s1 s2 c1 c2 p1 p2
    if [ "$warmup" -gt 0 ]; then
        "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"${warmup}s" --timeout 5s \
            -s "$SCRIPT_DIR/lookup.lua" "$url" -- "$POSTCODES" >/dev/null
    fi
    out=$TMP/wrk-$label.txt
    p1=$(proc_ticks "$pid")
    s1=$(core_ticks "$SERVER_CORE")
    c1=$(core_ticks "$CLIENT_CORE")
    "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" --timeout 5s \
        -s "$SCRIPT_DIR/lookup.lua" "$url" -- "$POSTCODES" >"$out"
    s2=$(core_ticks "$SERVER_CORE")
    c2=$(core_ticks "$CLIENT_CORE")
    p2=$(proc_ticks "$pid")
    line=$(grep '^WRK_RESULT' "$out") || die "wrk gave no result (see $out)"
    echo "$line server_core_busy=$(busy_percent "$s1" "$s2") server_core_tasks=$(task_percent "$s1" "$s2")" \
        "server_process=$(process_percent "$s1" "$s2" "$p1" "$p2") client_core_busy=$(busy_percent "$c1" "$c2")"
}

wrk_summary() {
    local l=$1
    printf '%s req/s, p50 %s ms, p99 %s ms, p99.9 %s ms, non2xx %s, socket errors %s, server core %s%% busy (processes %s%%, the server process %s%%), client core %s%%' \
        "$(kv "$l" rps)" "$(calc "$(kv "$l" p50_us) / 1000" 2)" "$(calc "$(kv "$l" p99_us) / 1000" 2)" \
        "$(calc "$(kv "$l" p999_us) / 1000" 2)" "$(kv "$l" non2xx)" \
        "$(($(kv "$l" connect_errors) + $(kv "$l" read_errors) + $(kv "$l" write_errors) + $(kv "$l" timeouts)))" \
        "$(kv "$l" server_core_busy)" "$(kv "$l" server_core_tasks)" "$(kv "$l" server_process)" "$(kv "$l" client_core_busy)"
}

# merge_wrk LINE...: one WRK_RESULT for several slices of a run: requests, durations,
# errors and bytes added up (so rps is over the whole), latency percentiles the worst
# slice's, core shares averaged.
merge_wrk() {
    printf '%s\n' "$@" | awk '
        { n++
          for (i = 2; i <= NF; i++) {
              split($i, kv, "=")
              if (kv[1] ~ /^(requests|duration_s|non2xx|connect_errors|read_errors|write_errors|timeouts|bytes)$/) sum[kv[1]] += kv[2]
              else if (kv[1] ~ /_us$/) { if (!(kv[1] in top) || kv[2] + 0 > top[kv[1]] + 0) top[kv[1]] = kv[2] }
              else if (kv[1] != "rps") mean[kv[1]] += kv[2]
          } }
        END {
            rps = (sum["duration_s"] > 0) ? sum["requests"] / sum["duration_s"] : 0
            printf "WRK_RESULT slices=%d rps=%.1f", n, rps
            for (k in sum) printf " %s=%s", k, sum[k]
            for (k in top) printf " %s=%s", k, top[k]
            for (k in mean) printf " %s=%.0f", k, mean[k] / n
            print ""
        }'
}

# merge_writes LINE...: one WRITES_RESULT for several slices: counts added up, the rate
# averaged, latencies the worst slice's.
merge_writes() {
    printf '%s\n' "$@" | awk '
        { n++
          for (i = 2; i <= NF; i++) {
              split($i, kv, "=")
              if (kv[1] ~ /^(duration_s|offered|skipped|publishes|retires|errors|vis_n|not_visible|vis_first_poll)$/) sum[kv[1]] += kv[2]
              else if (kv[1] ~ /_ms$/) { if (!(kv[1] in top) || kv[2] + 0 > top[kv[1]] + 0) top[kv[1]] = kv[2] }
              else if (kv[1] == "errors_by_kind") { if (kv[2] != "none") kinds = kinds (kinds == "" ? "" : ",") kv[2] }
              else if (kv[1] == "target_rate") rate = kv[2]
              else mean[kv[1]] += kv[2]
          } }
        END {
            printf "WRITES_RESULT slices=%d target_rate=%s errors_by_kind=%s", n, rate, kinds == "" ? "none" : kinds
            for (k in sum) printf " %s=%s", k, sum[k]
            for (k in top) printf " %s=%s", k, top[k]
            for (k in mean) printf " %s=%.2f", k, mean[k] / n
            print ""
        }'
}

# How busy each core is over 2 s before a run: the machine should be idle.
idle_check() {
    local c0 c1 s0 s1
    c0=$(core_ticks "$SERVER_CORE")
    c1=$(core_ticks "$CLIENT_CORE")
    sleep 2
    s0=$(busy_percent "$c0" "$(core_ticks "$SERVER_CORE")")
    s1=$(busy_percent "$c1" "$(core_ticks "$CLIENT_CORE")")
    echo "$s0 $s1"
}

# prepare_instance NAME N [DATABASE_URL]: a seeded database, an organization with
# national scope, an authority and its token, a started relai (pinned), outages declared
# in a third of the départements and N generated numbers imported. Sets DIR, TOKEN,
# RELAI_PID, BASE.
prepare_instance() {
    local name=$1 n=$2 db_url=${3:-} generated files org account f t0 code
    DIR=$TMP/$name
    mkdir -p "$DIR"
    RELAI_ARGS=(--data-dir "$DIR/data")
    [ -z "$db_url" ] || RELAI_ARGS+=(--database-url "$db_url")
    log "[$name] seeding all of France"
    relai "${RELAI_ARGS[@]}" seed >"$DIR/seed.log" 2>&1 || die "seed failed (see $DIR/seed.log)"
    generated=$(loadgen generate --numbers "$n" --seed-data "$REPO/seed-data" --out-dir "$DIR/csv")
    log "[$name] $generated"
    files=$(kv "$generated" files)
    org=$(relai "${RELAI_ARGS[@]}" org create --name "Banc d'essai" --kind ministry \
        --scope '*:national:FR' 2>>"$DIR/cli.log" | sed -n 's/^  "id": "\([^"]*\)".*/\1/p' | head -1)
    [ -n "$org" ] || die "org create failed (see $DIR/cli.log)"
    account=$(relai "${RELAI_ARGS[@]}" account create --org "$org" --role authority \
        --name "Banc d'essai" 2>>"$DIR/cli.log" | sed -n 's/^  "id": "\([^"]*\)".*/\1/p' | head -1)
    [ -n "$account" ] || die "account create failed (see $DIR/cli.log)"
    TOKEN=$(relai "${RELAI_ARGS[@]}" token issue --account "$account" --ttl 12h 2>>"$DIR/cli.log")
    [ -n "$TOKEN" ] || die "token issue failed (see $DIR/cli.log)"
    local port=${INSTANCE_PORT:-$RELAI_PORT}
    port_free "$port" || die "port $port is in use (--relai-port)"
    BASE=http://127.0.0.1:$port
    # The public rate limit off (one client address makes every request here) and the
    # access log silenced, as the issue asks.
    RELAI_PUBLIC_RATE_LIMIT=0 RELAI_LOG=warn "${PIN_SERVER[@]}" "$RELAI_BIN" "${RELAI_ARGS[@]}" serve \
        --bind "127.0.0.1:$port" --workers 1 >"$DIR/serve.log" 2>&1 &
    RELAI_PID=$!
    wait_ready "$BASE/readyz" "$RELAI_PID" "relai serve"
    log "[$name] relai serve ready (pid $RELAI_PID, --workers 1, ${PIN_SERVER[*]:-unpinned})"
    export RELAI_BENCH_TOKEN=$TOKEN
    # Outages first, while the directory is small (each write refreshes the snapshot), then
    # the numbers through POST /v1/numbers/import (what `relai import` does, but through
    # the running server, so that its snapshot has them).
    log "[$name] $(loadgen outages --base "$BASE" --seed-data "$REPO/seed-data")"
    printf 'Authorization: Bearer %s\n' "$TOKEN" >"$DIR/auth-header"
    IFS=, read -r -a csvs <<<"$files"
    for f in "${csvs[@]}"; do
        t0=$(date +%s.%N)
        code=$(curl -s --noproxy '*' -o "$DIR/import.json" -w '%{http_code}' -X POST \
            -H @"$DIR/auth-header" -H 'Content-Type: text/csv' --data-binary @"$f" \
            "$BASE/v1/numbers/import")
        [ "$code" = 201 ] || die "import of $f answered $code: $(head -c 500 "$DIR/import.json")"
        log "[$name] POST /v1/numbers/import $(basename "$f"): $(grep -o '"imported":[0-9]*' "$DIR/import.json") in $(calc "$(date +%s.%N) - $t0" 2) s"
    done
}

stop_relai() {
    stop_pid "$RELAI_PID"
    RELAI_PID=
}

start_nginx() {
    local root=$1 conf=$TMP/nginx/nginx.conf user_directive=
    mkdir -p "$TMP/nginx/tmp"
    [ "$(id -u)" != 0 ] || user_directive="user root;"
    sed -e "s|@USER_DIRECTIVE@|$user_directive|" -e "s|@DIR@|$TMP/nginx|g" \
        -e "s|@ROOT@|$root|g" -e "s|@PORT@|$NGINX_PORT|g" \
        "$SCRIPT_DIR/nginx.conf" >"$conf"
    port_free "$NGINX_PORT" || die "port $NGINX_PORT is in use (--nginx-port)"
    "${PIN_SERVER[@]}" nginx -p "$TMP/nginx" -c "$conf" -e "$TMP/nginx/error.log" \
        >"$TMP/nginx/stdout.log" 2>&1 &
    NGINX_PID=$!
    wait_ready "http://127.0.0.1:$NGINX_PORT/v1/lookup?postcode=$(head -1 "$POSTCODES")" \
        "$NGINX_PID" nginx
}

stop_nginx() {
    stop_pid "$NGINX_PID"
    NGINX_PID=
}

# ---------------------------------------------------------------- the runs

declare -A R_LINE N_LINE A_LINE W_LINE WR_LINE RSS_SETUP RSS_READ RSS_PEAK SNAP
STARTED=$(date +%s)
read -r IDLE0 IDLE1 <<<"$(idle_check)"
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "before starting: core $SERVER_CORE ${IDLE0}% busy, core $CLIENT_CORE ${IDLE1}% busy, load average $LOADAVG_START"
if holds "$IDLE0 > 10 || $IDLE1 > 10"; then
    log "WARNING: the machine is not idle; other processes will disturb the figures"
fi
log "temporary directory $TMP; $PINNING; sizes ${SIZES}; ${DURATION_S}s runs, $CONNECTIONS connections"

for i in "${!SIZE_LIST[@]}"; do
    n=${SIZE_LIST[$i]}
    log "=== $n numbers in force"
    # A port per size: the smallest size's server stays up for the growth comparison.
    INSTANCE_PORT=$((RELAI_PORT + 2 + i)) prepare_instance "n$n" "$n"
    # The setup (outages, then imports of up to 50,000 rows per request) has its own peak;
    # the targets are about serving, so the peak starts again from here.
    RSS_SETUP[$n]=$(peak_rss_mb "$RELAI_PID")
    reset_peak_rss "$RELAI_PID"
    log "[n$n] peak RSS during the setup (imports): ${RSS_SETUP[$n]} MB; now $(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$RELAI_PID/status") MB"
    ROOT=$TMP/nginx-root-$n
    POSTCODES=$DIR/postcodes.txt
    SNAP[$n]=$(loadgen snapshot --base "$BASE" --postcodes "$REPO/seed-data/postcodes.csv" \
        --out-dir "$ROOT/lookup" --list "$POSTCODES")
    log "[n$n] ${SNAP[$n]}"

    # relai and nginx side by side: both running, hit in alternating slices (each after a
    # warm-up of its own), for the same reason as the slices under writes below.
    start_nginx "$ROOT"
    log "[n$n] $(loadgen compare --a "$BASE" --b "http://127.0.0.1:$NGINX_PORT" --list "$POSTCODES")"
    slice_s=$(((DURATION_S + SLICES - 1) / SLICES))
    log "[n$n] relai and nginx, alternating: $SLICES x (wrk ${slice_s}s relai; wrk ${slice_s}s nginx), $CONNECTIONS connections"
    r_slices=() n_slices=()
    for k in $(seq 1 "$SLICES"); do
        r_slices+=("$(run_wrk "$BASE" "relai-$n-$k" "$RELAI_PID" "$slice_s")")
        n_slices+=("$(run_wrk "http://127.0.0.1:$NGINX_PORT" "nginx-$n-$k" "$NGINX_PID" "$slice_s")")
        log "[n$n] slice $k: relai $(kv "${r_slices[-1]}" rps) req/s, nginx $(kv "${n_slices[-1]}" rps) req/s"
    done
    R_LINE[$n]=$(merge_wrk "${r_slices[@]}")
    N_LINE[$n]=$(merge_wrk "${n_slices[@]}")
    RSS_READ[$n]=$(peak_rss_mb "$RELAI_PID")
    log "[n$n] relai: $(wrk_summary "${R_LINE[$n]}"), peak RSS ${RSS_READ[$n]} MB"
    log "[n$n] nginx: $(wrk_summary "${N_LINE[$n]}")"
    stop_nginx
    [ "$KEEP" = 1 ] || rm -rf "$ROOT"

    # Reads under writes against reads alone, in alternating slices: the speed of this VM
    # drifts by tens of percent from one minute to the next, and two phases a minute
    # apart would compare two different machines as much as with and without writes.
    log "[n$n] relai alone and under $WRITE_RATE writes/s, alternating: $SLICES x (wrk ${slice_s}s alone; writes for $((slice_s + 2))s with wrk ${slice_s}s in the middle)"
    alone=() under=() written=()
    for k in $(seq 1 "$SLICES"); do
        alone+=("$(run_wrk "$BASE" "relai-alone-$n-$k" "$RELAI_PID" "$slice_s" 0)")
        "${PIN_CLIENT[@]}" "$LOADGEN_BIN" writes --base "$BASE" --seed-data "$REPO/seed-data" --rate "$WRITE_RATE" \
            --duration "$((slice_s + 2))s" >"$DIR/writes-$k.txt" 2>"$DIR/writes-$k.err" &
        WRITER_PID=$!
        sleep 1
        under+=("$(run_wrk "$BASE" "relai-writes-$n-$k" "$RELAI_PID" "$slice_s" 0)")
        wait "$WRITER_PID" || die "loadgen writes failed (see $DIR/writes-$k.err)"
        WRITER_PID=
        written+=("$(grep '^WRITES_RESULT' "$DIR/writes-$k.txt")") || die "no WRITES_RESULT (see $DIR/writes-$k.*)"
        log "[n$n] slice $k: alone $(kv "${alone[-1]}" rps) req/s, under writes $(kv "${under[-1]}" rps) req/s, $(kv "${written[-1]}" writes_per_s) writes/s"
    done
    A_LINE[$n]=$(merge_wrk "${alone[@]}")
    W_LINE[$n]=$(merge_wrk "${under[@]}")
    WR_LINE[$n]=$(merge_writes "${written[@]}")
    RSS_PEAK[$n]=$(peak_rss_mb "$RELAI_PID")
    log "[n$n] relai alone (slices): $(wrk_summary "${A_LINE[$n]}")"
    log "[n$n] relai under writes (slices): $(wrk_summary "${W_LINE[$n]}")"
    log "[n$n] ${WR_LINE[$n]}"
    log "[n$n] peak RSS over the whole run: ${RSS_PEAK[$n]} MB"
    if [ "$i" = 0 ] && [ "${#SIZE_LIST[@]}" -ge 2 ]; then
        SMALL_PID=$RELAI_PID SMALL_BASE=$BASE SMALL_POSTCODES=$POSTCODES
        RELAI_PID=
    elif [ "$i" != $((${#SIZE_LIST[@]} - 1)) ]; then
        stop_relai
    fi
done

# Growth: the smallest and the largest directory side by side, in alternating slices
# (the per-size runs above are minutes apart, and the VM's speed drifts between them).
declare -A G_LINE
if [ -n "$SMALL_PID" ]; then
    n_small=${SIZE_LIST[0]} n_large=${SIZE_LIST[${#SIZE_LIST[@]}-1]}
    slice_s=$(((DURATION_S + SLICES - 1) / SLICES))
    log "=== growth: $n_small against $n_large numbers, side by side: $SLICES x (wrk ${slice_s}s each)"
    g_small=() g_large=()
    for k in $(seq 1 "$SLICES"); do
        POSTCODES=$SMALL_POSTCODES
        g_small+=("$(run_wrk "$SMALL_BASE" "growth-$n_small-$k" "$SMALL_PID" "$slice_s")")
        POSTCODES=$DIR/postcodes.txt
        g_large+=("$(run_wrk "$BASE" "growth-$n_large-$k" "$RELAI_PID" "$slice_s")")
        log "[growth] slice $k: $n_small numbers $(kv "${g_small[-1]}" rps) req/s, $n_large numbers $(kv "${g_large[-1]}" rps) req/s"
    done
    G_LINE[small]=$(merge_wrk "${g_small[@]}")
    G_LINE[large]=$(merge_wrk "${g_large[@]}")
    stop_pid "$SMALL_PID"
    SMALL_PID=
fi
stop_relai

# Publish throughput.
declare -A P_LINE P_NOTE
run_publish_max() {
    local backend=$1 db_url=${2:-}
    log "=== publish throughput on $backend ($WRITE_SIZE numbers in force)"
    prepare_instance "publish-$backend" "$WRITE_SIZE" "$db_url"
    local s1 s2 p1 p2
    p1=$(proc_ticks "$RELAI_PID")
    s1=$(core_ticks "$SERVER_CORE")
    P_LINE[$backend]=$(loadgen publish-max --base "$BASE" --seed-data "$REPO/seed-data" \
        --concurrency "$PUBLISH_CONCURRENCY" --duration "${PUBLISH_DURATION_S}s")
    s2=$(core_ticks "$SERVER_CORE")
    p2=$(proc_ticks "$RELAI_PID")
    P_LINE[$backend]="${P_LINE[$backend]} server_core_busy=$(busy_percent "$s1" "$s2") server_core_tasks=$(task_percent "$s1" "$s2") server_process=$(process_percent "$s1" "$s2" "$p1" "$p2")"
    log "[$backend] ${P_LINE[$backend]}"
    stop_relai
}
run_publish_max sqlite
if [ "$NO_POSTGRES" = 1 ]; then
    P_NOTE[postgres]="not run (--no-postgres)"
elif ! psql "$PG_URL" -qAt -c 'SELECT 1' >/dev/null 2>"$TMP/psql.err"; then
    P_NOTE[postgres]="not run: PostgreSQL unreachable at $PG_URL"
    log "WARNING: ${P_NOTE[postgres]} ($(head -1 "$TMP/psql.err"))"
else
    [[ $PG_URL =~ ^postgres(ql)?://[^/]+/[^/?]+$ ]] ||
        die "--pg-url: give postgres://USER@HOST:PORT/DATABASE, without query parameters"
    psql "$PG_URL" -qAt -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
    psql "$PG_URL" -qAt -c "CREATE DATABASE $PG_DB" >/dev/null
    PG_CREATED=1
    pin_postgres
    run_publish_max postgres "${PG_URL%/*}/$PG_DB"
    unpin_postgres
    psql "$PG_URL" -qAt -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
    PG_CREATED=0
fi

# ---------------------------------------------------------------- summary

ms() { calc "$1 / 1000" 2; }
pass() { if holds "$1"; then echo PASS; else echo FAIL; fi; }
# Whether other processes took more than 10% of the server core during a run: the core's
# time in processes (interrupts and softirqs aside) beyond what the server process used.
disturbed_run() { holds "$(kv "$1" server_core_tasks) - $(kv "$1" server_process) > 10"; }
# verdict EXPR RESULT_LINE...: PASS or FAIL, marked unreliable when a run it rests on was
# disturbed by other processes.
verdict() {
    local v l
    v=$(pass "$1")
    shift
    for l in "$@"; do
        if disturbed_run "$l"; then
            v="$v (unreliable: machine busy)"
            break
        fi
    done
    echo "$v"
}
socket_errors() {
    echo $(($(kv "$1" connect_errors) + $(kv "$1" read_errors) + $(kv "$1" write_errors) + $(kv "$1" timeouts)))
}

SMALLEST=${SIZE_LIST[0]}
LARGEST=${SIZE_LIST[${#SIZE_LIST[@]}-1]}
REVISION=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null; then REVISION="$REVISION (src modified)"; fi
CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)

summary() {
    local n l w wr ratio drop vis
    echo "### Load benchmark, $(date -u +%Y-%m-%d) ($REVISION)"
    echo
    echo "$CORES cores ($CPU), $PINNING; relai \`serve --workers 1\` (SQLite), nginx" \
        "\`worker_processes 1\`; wrk -t1 -c$CONNECTIONS; relai and nginx side by side in $SLICES alternating pairs of slices, ${DURATION_S} s in all each (every slice after a ${WARMUP_S} s warm-up), then relai alone and under writes the same way;" \
        "lookups rotate over $(wc -l <"$POSTCODES") postcodes; outages in a third of the départements."
    echo
    echo "| numbers in force | relai req/s | p50 ms | p99 ms (worst slice) | p99.9 ms | nginx req/s | relai / nginx | req/s alone / under writes, alternating slices (change) | writes/s achieved (target $WRITE_RATE) | visible after 201, p50 / p99 / max ms | not visible in 5 s | peak RSS MB (setup / reads / reads and writes) |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in "${SIZE_LIST[@]}"; do
        l=${R_LINE[$n]} w=${W_LINE[$n]} wr=${WR_LINE[$n]}
        ratio=$(calc "$(kv "$l" rps) / $(kv "${N_LINE[$n]}" rps)" 3)
        drop=$(calc "100 * ($(kv "$w" rps) - $(kv "${A_LINE[$n]}" rps)) / $(kv "${A_LINE[$n]}" rps)" 1)
        vis="$(kv "$wr" vis_p50_ms) / $(kv "$wr" vis_p99_ms) / $(kv "$wr" vis_max_ms)"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s (%s%%) | %s | %s | %s | %s / %s / %s |\n' \
            "$n" "$(kv "$l" rps)" "$(ms "$(kv "$l" p50_us)")" "$(ms "$(kv "$l" p99_us)")" \
            "$(ms "$(kv "$l" p999_us)")" "$(kv "${N_LINE[$n]}" rps)" "$ratio" \
            "$(kv "${A_LINE[$n]}" rps)" "$(kv "$w" rps)" "$drop" "$(kv "$wr" writes_per_s)" "$vis" \
            "$(kv "$wr" not_visible)" "${RSS_SETUP[$n]}" "${RSS_READ[$n]}" "${RSS_PEAK[$n]}"
    done
    echo
    echo "Server core during the runs (relai / nginx / relai under writes): busy, in processes (the rest is interrupts and softirqs, such as loopback TCP delivery), in the server process; client core busy; errors:"
    echo
    for n in "${SIZE_LIST[@]}"; do
        l=${R_LINE[$n]} w=${W_LINE[$n]} wr=${WR_LINE[$n]}
        echo "- $n: server core $(kv "$l" server_core_busy)% / $(kv "${N_LINE[$n]}" server_core_busy)% / $(kv "$w" server_core_busy)% busy," \
            "in processes $(kv "$l" server_core_tasks)% / $(kv "${N_LINE[$n]}" server_core_tasks)% / $(kv "$w" server_core_tasks)%," \
            "the server process $(kv "$l" server_process)% / $(kv "${N_LINE[$n]}" server_process)% / $(kv "$w" server_process)%;" \
            "client $(kv "$l" client_core_busy)% / $(kv "${N_LINE[$n]}" client_core_busy)% / $(kv "$w" client_core_busy)%;" \
            "non-2xx $(kv "$l" non2xx) / $(kv "${N_LINE[$n]}" non2xx) / $(kv "$w" non2xx)," \
            "socket errors $(socket_errors "$l") / $(socket_errors "${N_LINE[$n]}") / $(socket_errors "$w");" \
            "writes: $(kv "$wr" publishes) publishes, $(kv "$wr" retires) retires, $(kv "$wr" errors) errors ($(kv "$wr" errors_by_kind))," \
            "$(kv "$wr" skipped) of $(kv "$wr" offered) ticks skipped at the in-flight cap, write p50 / p99 $(kv "$wr" write_p50_ms) / $(kv "$wr" write_p99_ms) ms," \
            "$(kv "$wr" vis_first_poll) of $(kv "$wr" publishes) publishes shown by the first lookup after their 201;" \
            "lookup bytes mean $(kv "${SNAP[$n]}" bytes_mean), max $(kv "${SNAP[$n]}" bytes_max)"
    done
    echo
    echo "| publishes through the API ($WRITE_SIZE numbers in force, $PUBLISH_CONCURRENCY clients, ${PUBLISH_DURATION_S} s) | publishes/s | p50 ms | p99 ms | errors | server core busy (processes, server process) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for backend in sqlite postgres; do
        if [ -n "${P_LINE[$backend]:-}" ]; then
            l=${P_LINE[$backend]}
            label=$backend
            [ "$backend" = sqlite ] || label="$backend (its processes $PG_PINNED_NOTE)"
            echo "| $label | $(kv "$l" publishes_per_s) | $(kv "$l" p50_ms) | $(kv "$l" p99_ms) | $(kv "$l" errors) ($(kv "$l" errors_by_kind)) | $(kv "$l" server_core_busy)% ($(kv "$l" server_core_tasks)%, $(kv "$l" server_process)%) |"
        else
            echo "| $backend | ${P_NOTE[$backend]:-not run} | | | | |"
        fi
    done
    echo
    echo "| target | measured | |"
    echo "|---|---|---|"
    local worst_ratio=999 worst_p99=0 worst_drop=-999 worst_vis=0 not_visible=0 none_visible=0 rate_ok=1 errors=0 r
    local -a reads=() nginx=() under=()
    for n in "${SIZE_LIST[@]}"; do
        reads+=("${R_LINE[$n]}")
        nginx+=("${N_LINE[$n]}")
        under+=("${A_LINE[$n]}" "${W_LINE[$n]}")
        l=${R_LINE[$n]} w=${W_LINE[$n]} wr=${WR_LINE[$n]}
        r=$(calc "$(kv "$l" rps) / $(kv "${N_LINE[$n]}" rps)" 4)
        holds "$r < $worst_ratio" && worst_ratio=$r
        holds "$(kv "$l" p99_us) > $worst_p99" && worst_p99=$(kv "$l" p99_us)
        r=$(calc "100 * ($(kv "${A_LINE[$n]}" rps) - $(kv "$w" rps)) / $(kv "${A_LINE[$n]}" rps)" 1)
        holds "$r > $worst_drop" && worst_drop=$r
        r=$(kv "$wr" vis_max_ms)
        if is_number "$r"; then holds "$r > $worst_vis" && worst_vis=$r; fi
        not_visible=$((not_visible + $(kv "$wr" not_visible)))
        [ "$(kv "$wr" vis_n)" -gt 0 ] || none_visible=1
        holds "$(kv "$wr" writes_per_s) >= 0.95 * $WRITE_RATE" || rate_ok=0
        errors=$((errors + $(kv "$l" non2xx) + $(kv "$w" non2xx) + $(kv "${N_LINE[$n]}" non2xx) + $(socket_errors "$l") + $(socket_errors "$w") + $(socket_errors "${N_LINE[$n]}")))
    done
    echo "| lookup throughput >= 0.7 x nginx (every size) | lowest relai / nginx $(calc "$worst_ratio" 3) | $(verdict "$worst_ratio >= 0.7" "${reads[@]}" "${nginx[@]}") |"
    local p99_note=""
    [ "$CONNECTIONS" = 64 ] || p99_note=" (run at $CONNECTIONS connections, not 64)"
    echo "| p99 < 10 ms at 64 connections (every size) | highest p99 $(ms "$worst_p99") ms$p99_note | $(verdict "$worst_p99 < 10000 && $CONNECTIONS == 64" "${reads[@]}") |"
    local rate_note=""
    [ "$rate_ok" = 1 ] || rate_note="; the write rate of $WRITE_RATE/s was NOT reached (see writes/s achieved)"
    echo "| under $WRITE_RATE writes/s read throughput drops < 20% (against reads alone in the slices between) | largest drop $worst_drop%$rate_note | $(verdict "$worst_drop < 20 && $rate_ok == 1 && $WRITE_RATE >= 200" "${under[@]}") |"
    echo "| a write is visible in a lookup within 50 ms of its 201 (every publish) | slowest $worst_vis ms, $not_visible not visible within 5 s | $(verdict "$worst_vis <= 50 && $not_visible == 0 && $none_visible == 0 && $rate_ok == 1" "${under[@]}") |"
    if [ -n "${G_LINE[small]:-}" ]; then
        local change
        change=$(calc "100 * ($(kv "${G_LINE[large]}" rps) - $(kv "${G_LINE[small]}" rps)) / $(kv "${G_LINE[small]}" rps)" 1)
        echo "| from $SMALLEST to $LARGEST numbers lookup throughput falls < 10% (both servers side by side, alternating slices) | change $change% ($(kv "${G_LINE[small]}" rps) to $(kv "${G_LINE[large]}" rps) req/s) | $(verdict "$change > -10" "${G_LINE[small]}" "${G_LINE[large]}") |"
    else
        echo "| from 1,000 to 100,000 numbers lookup throughput falls < 10% | one size only ($SMALLEST) | NOT MEASURED |"
    fi
    local rss_max=0
    for n in "${SIZE_LIST[@]}"; do holds "${RSS_PEAK[$n]} > $rss_max" && rss_max=${RSS_PEAK[$n]}; done
    local setup_max=0
    for n in "${SIZE_LIST[@]}"; do holds "${RSS_SETUP[$n]} > $setup_max" && setup_max=${RSS_SETUP[$n]}; done
    echo "| peak RSS < 200 MB (at up to $LARGEST numbers, serving reads and writes; the setup's imports peaked at $setup_max MB) | $rss_max MB | $(pass "$rss_max < 200") |"
    for backend in sqlite postgres; do
        if [ -n "${P_LINE[$backend]:-}" ]; then
            r=$(kv "${P_LINE[$backend]}" publishes_per_s)
            # PostgreSQL's own processes may run on the client core (--pg-unpinned, or a
            # server elsewhere): that run is not judged disturbed from the server core alone.
            if [ "$backend" = sqlite ]; then l=${P_LINE[$backend]}; else l=""; fi
            echo "| >= 500 publishes/s on $backend | $r/s | $(verdict "$r >= 500" ${l:+"$l"}) |"
        else
            echo "| >= 500 publishes/s on $backend | ${P_NOTE[$backend]:-not run} | NOT MEASURED |"
        fi
    done
    local disturbed=""
    for n in "${SIZE_LIST[@]}"; do
        for l in "${R_LINE[$n]}" "${N_LINE[$n]}" "${W_LINE[$n]}"; do
            if disturbed_run "$l"; then
                disturbed="$disturbed $n"
                break
            fi
        done
    done
    if [ -n "${P_LINE[sqlite]:-}" ] && disturbed_run "${P_LINE[sqlite]}"; then
        disturbed="$disturbed publish-sqlite"
    fi
    if [ -n "$disturbed" ] || holds "$IDLE0 > 10 || $IDLE1 > 10"; then
        echo
        echo "WARNING: the machine was not idle (before the run: core $SERVER_CORE ${IDLE0}% and core $CLIENT_CORE ${IDLE1}% busy, load average $LOADAVG_START${disturbed:+; other processes took more than 10% of the server core during the runs:$disturbed}): the figures are disturbed, and the verdicts that rest on them are marked unreliable."
    fi
    if [ "$errors" -gt 0 ]; then
        echo
        echo "WARNING: $errors failed lookups (non-2xx or socket errors) during the wrk runs; see above."
    fi
    echo
    echo "Whole run: $(($(date +%s) - STARTED)) s. Command: \`tests/load/bench.sh --sizes $SIZES --duration ${DURATION_S}s --connections $CONNECTIONS --write-rate $WRITE_RATE --slices $SLICES\`."
}

SUMMARY=$(summary)
echo
echo "$SUMMARY"
if [ -n "$OUT" ]; then
    printf '%s\n' "$SUMMARY" >"$OUT"
    log "summary written to $OUT"
fi
