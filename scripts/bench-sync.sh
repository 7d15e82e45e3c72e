#!/usr/bin/env bash
# sluice live-sync benchmark (part of make bench).
#
# pgbench -i -s $BENCH_SCALE in PostgreSQL database sluice_bench_sync, then:
#   1. pgbench's default TPC-B-like script at each client count in $BENCH_CLIENTS,
#      $BENCH_SECONDS s each, $BENCH_RUNS times, WITHOUT sluice: TPS and latency;
#   2. sluice sync of pgbench_accounts, pgbench_branches and pgbench_tellers to MariaDB
#      while pgbench (4 clients) runs: copy time under load;
#   3. the same pgbench runs WITH sluice streaming: TPS, latency, and sluice's lag
#      (p50/p99, source commit to target commit) while pgbench runs;
#   4. catch-up: sluice is stopped, pgbench runs 8 clients for $BENCH_SECONDS s, then
#      sluice starts again and the script times how fast it applies the backlog;
#   5. cutover while pgbench runs: the write pause sluice reports;
#   6. verify (must be EQUAL) and finish (no slot may remain).
# The WAL retained by the slot is sampled every second throughout.
# Writes the section between <!-- bench:sync:start --> and <!-- bench:sync:end --> of
# docs/BENCHMARKS.md (BENCH_DOC to write elsewhere; a BENCH_SCALE other than 10 is a dry run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec 2>&1

RUNS=${BENCH_RUNS:-3}
SCALE=${BENCH_SCALE:-10}
SECONDS_EACH=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-"1 4 8"}
if [ -n "${BENCH_DOC:-}" ]; then DOC=$BENCH_DOC
elif [ "$SCALE" = 10 ]; then DOC=$ROOT/docs/BENCHMARKS.md
else DOC=""; fi
need_sluice

DB=sluice_bench_sync
SRC=$(pg_url "$DB")
TGT=$(my_url "$DB")
PORT=${BENCH_PORT:-7072}
API="http://127.0.0.1:$PORT"
export SLUICE_API_TOKEN=bench-$$
SLOT=sluice_bench_sync
TABLES=pgbench_accounts,pgbench_branches,pgbench_tellers
WORK=$(mktemp -d -t sluice-bench-sync.XXXXXX)
SYNC_PID=""; SAMPLER_PID=""; LOAD_PID=""
cleanup() {
  for p in $LOAD_PID $SAMPLER_PID; do kill "$p" 2>/dev/null || true; done
  [ -n "$SYNC_PID" ] && kill "$SYNC_PID" 2>/dev/null && wait "$SYNC_PID" 2>/dev/null
  "$SLUICE" abort --source "$SRC" --target "$TGT" --slot "$SLOT" --api "$API" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

status() {
  curl -fsS "$API/api/v1/status" 2>/dev/null | python3 -c '
import json, sys
st = json.load(sys.stdin)
print(" ".join(str(st.get(f, "")) for f in sys.argv[1:]))' "$@"
}
start_sync() {
  "$SLUICE" sync --source "$SRC" --target "$TGT" --tables "$TABLES" --slot "$SLOT" --listen "127.0.0.1:$PORT" \
    --log-format json >>"$WORK/sync.out" 2>>"$WORK/sync.log" &
  SYNC_PID=$!
  for _ in $(seq 1 100); do status phase >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "sluice sync did not start; see $WORK/sync.log"
}
stop_sync() {
  curl -sS -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" "$API/api/v1/stop" >/dev/null 2>&1 || true # the sync may close the connection as it exits
  wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=""
}
# run_pgbench CLIENTS SECONDS: prints "tps latency_ms"
run_pgbench() {
  pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c "$1" -j "$(( $1 < 2 ? 1 : 2 ))" -T "$2" "$DB" 2>/dev/null |
    awk '/^latency average/ { lat = $4 } /^tps/ { tps = $3 } END { printf "%.1f %.3f\n", tps, lat }'
}

say "== pgbench -i -s $SCALE into $DB"
pg_recreate_db "$DB"
my_recreate_db "$DB"
pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -i -q -s "$SCALE" "$DB" >/dev/null 2>&1
pg "$DB" -c "VACUUM ANALYZE"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# WAL retained by the slot, sampled every second (bytes; max kept in a file).
( max=0; while :; do
    v=$(pg postgres -Atc "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::bigint, 0) FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$max" ] && max=$v && echo "$max" >"$WORK/walmax"
    sleep 1
  done ) &
SAMPLER_PID=$!

declare -A BASE_TPS BASE_LAT WITH_TPS WITH_LAT
say "== 1. pgbench without sluice: clients $CLIENTS, ${SECONDS_EACH}s each, $RUNS runs"
for c in $CLIENTS; do
  t=(); l=()
  for ((r = 1; r <= RUNS; r++)); do read -r tp la <<<"$(run_pgbench "$c" "$SECONDS_EACH")"; t+=("$tp"); l+=("$la"); done
  BASE_TPS[$c]=$(median "${t[@]}"); BASE_LAT[$c]=$(median "${l[@]}")
  say "   $c clients: $(printf '%.0f' "${BASE_TPS[$c]}") tps, ${BASE_LAT[$c]} ms"
done

say "== 2. sluice sync while pgbench runs (4 clients)"
pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 4 -j 2 -T 3600 "$DB" >/dev/null 2>&1 &
LOAD_PID=$!
t0=$(now)
start_sync
while :; do
  read -r phase <<<"$(status phase)"
  [ "$phase" = streaming ] && break
  kill -0 "$SYNC_PID" 2>/dev/null || die "sluice sync exited; see $WORK/sync.log"
  sleep 0.5
done
copy_secs=$(elapsed "$t0")
kill "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=""
say "   copied under load in $copy_secs s"
for _ in $(seq 1 120); do read -r lb <<<"$(status lag_bytes)"; [ "$lb" = 0 ] && break; sleep 0.5; done

say "== 3. pgbench with sluice streaming"
for c in $CLIENTS; do
  t=(); l=()
  for ((r = 1; r <= RUNS; r++)); do read -r tp la <<<"$(run_pgbench "$c" "$SECONDS_EACH")"; t+=("$tp"); l+=("$la"); done
  WITH_TPS[$c]=$(median "${t[@]}"); WITH_LAT[$c]=$(median "${l[@]}")
  say "   $c clients: $(printf '%.0f' "${WITH_TPS[$c]}") tps, ${WITH_LAT[$c]} ms"
done
read -r lag50 lag99 <<<"$(status lag_p50_seconds lag_p99_seconds)"
say "   lag while pgbench ran: p50 $lag50 s, p99 $lag99 s"

say "== 4. catch-up: sluice stopped while pgbench runs 8 clients for ${SECONDS_EACH}s"
stop_sync
lsn_before=$(pg "$DB" -Atc "SELECT pg_current_wal_lsn()")
run_pgbench 8 "$SECONDS_EACH" >/dev/null
backlog_tx=$(pg "$DB" -Atc "SELECT count(*) FROM pgbench_history")
backlog_wal=$(pg "$DB" -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn_before')::bigint")
t0=$(now)
start_sync
while :; do read -r lb ch <<<"$(status lag_bytes changes_applied)"; [ "$lb" = 0 ] && break; sleep 0.2; done
catch_secs=$(elapsed "$t0")
read -r catch_changes <<<"$(status changes_applied)"
catch_rate=$(calc "$catch_changes / $catch_secs")
say "   applied $catch_changes changes ($(human_count "$backlog_wal") bytes of WAL) in $catch_secs s: $(printf '%.0f' "$catch_rate") changes/s"

say "== 5. cutover while pgbench runs (4 clients)"
pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 4 -j 2 -T 3600 "$DB" >/dev/null 2>&1 &
LOAD_PID=$!
sleep 5
cut_out=$("$SLUICE" cutover --api "$API" 2>>"$WORK/sync.log")
pause_ms=$(printf '%s\n' "$cut_out" | sed -n 's/.*write pause \([0-9.]*\) ms.*/\1/p')
say "   $cut_out"
kill "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=""
for _ in $(seq 1 120); do read -r lb <<<"$(status lag_bytes)"; [ "$lb" = 0 ] && break; sleep 0.5; done

say "== 6. verify and finish"
verify_out=$("$SLUICE" verify --source "$SRC" --target "$TGT" --tables "$TABLES" 2>>"$WORK/sync.log") && verify_rc=0 || verify_rc=$?
verdict=$(printf '%s\n' "$verify_out" | sed -n 's/^verify: \([A-Z]*\).*/\1/p')
"$SLUICE" finish --source "$SRC" --target "$TGT" --slot "$SLOT" --api "$API" >/dev/null 2>>"$WORK/sync.log"
wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=""
kill "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
slots=$(pg postgres -Atc "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")
walmax=$(cat "$WORK/walmax" 2>/dev/null || echo 0)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
machine_facts
say "   verify: $verdict; slots left: $slots"

met() { [ "$1" = 1 ] && echo "met" || echo "**not met**"; }
worst_ratio=1
rows=""
for c in $CLIENTS; do
  ratio=$(calc "${WITH_TPS[$c]} / ${BASE_TPS[$c]}")
  worst_ratio=$(awk -v a="$worst_ratio" -v b="$ratio" 'BEGIN { print (b < a) ? b : a }')
  rows+=$(printf '| %s | %.0f | %.2f | %.0f | %.2f | %.2f |\n' "$c" "${BASE_TPS[$c]}" "${BASE_LAT[$c]}" "${WITH_TPS[$c]}" "${WITH_LAT[$c]}" "$ratio")$'\n'
done
g_lag=$(awk -v v="$lag99" 'BEGIN { print (v < 1.0) ? 1 : 0 }')
g_catch=$(awk -v v="$catch_rate" 'BEGIN { print (v >= 50000) ? 1 : 0 }')
g_pause=$(awk -v v="${pause_ms:-99999}" 'BEGIN { print (v < 100) ? 1 : 0 }')
g_tps=$(awk -v v="$worst_ratio" 'BEGIN { print (v >= 0.9) ? 1 : 0 }')
cmd="make bench"

cat >"$WORK/section.md" <<EOF
<!-- bench:sync:start -->
## Live sync under pgbench: \`sluice sync\` of pgbench_accounts, _branches, _tellers

Written by \`scripts/bench-sync.sh\` (run by \`$cmd\`); rerun it to refresh this section.

- Date: $started; load average $load_before before, $load_after after
- Machine: $(nproc) CPUs ($cpu), $mem RAM; PostgreSQL $pg_ver, MariaDB $my_ver on 127.0.0.1
- sluice commit $commit; \`sluice sync\` defaults (batch of up to 5000 changes or 100 ms)
- Data: \`pgbench -i -s $SCALE\`; workload: pgbench's default TPC-B-like script; $RUNS runs of ${SECONDS_EACH} s per client count, medians

| pgbench clients | TPS without sluice | latency ms | TPS with sluice streaming | latency ms | with / without |
|---:|---:|---:|---:|---:|---:|
$rows
| figure | measured |
|---|---|
| copy time of the 3 tables under load (4 pgbench clients) | $copy_secs s |
| lag while pgbench ran (source commit → target commit) | p50 $(printf '%.3f' "$lag50") s, p99 $(printf '%.3f' "$lag99") s |
| catch-up after a stop (8 clients for ${SECONDS_EACH} s: $(human_count "$backlog_wal") bytes of WAL) | $(human_count "$catch_changes") changes in $catch_secs s = $(printf '%.0f' "$catch_rate") changes/s |
| most WAL retained by the slot (sampled every second) | $(human_count "$walmax") bytes |
| cutover write pause (fence → done, 4 clients writing) | ${pause_ms:-?} ms |
| verify after cutover | $verdict |

| goal (from the issue) | measured | |
|---|---|---|
| lag p99 under 1 s at the rate pgbench reaches | $(printf '%.3f' "$lag99") s | $(met "$g_lag") |
| catch-up at 50,000 changes/s or more | $(printf '%.0f' "$catch_rate") changes/s | $(met "$g_catch") |
| write pause under 100 ms | ${pause_ms:-?} ms | $(met "$g_pause") |
| pgbench TPS with sluice ≥ 90% of without | worst ratio $(printf '%.2f' "$worst_ratio") | $(met "$g_tps") |

A "change" is one row change applied (pgbench's transaction updates three rows and
inserts into pgbench_history, which is not migrated). The machine has 2 cores shared by
pgbench, PostgreSQL, MariaDB and sluice, so the TPS ratio includes sluice's CPU use.
<!-- bench:sync:end -->
EOF
[ -z "$DOC" ] || write_section sync "$WORK/section.md" "$DOC"
cat "$WORK/section.md"
[ "$verdict" = EQUAL ] && [ "$slots" = 0 ] || { say "bench-sync: FAILED (verify $verdict, slots left $slots)"; exit 1; }
