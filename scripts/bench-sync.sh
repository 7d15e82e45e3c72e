#!/usr/bin/env bash
# sluice live-sync benchmark (part of make bench).
#
# pgbench -i -s $BENCH_SCALE in PostgreSQL database sluice_bench_sync, then:
#   1. sluice sync of pgbench_accounts, pgbench_branches and pgbench_tellers to MariaDB
#      while pgbench (4 clients) runs: copy time under load;
#   2. $BENCH_RUNS rounds of pgbench's default TPC-B-like script at each client count in
#      $BENCH_CLIENTS, $BENCH_SECONDS s each, once WITHOUT sluice (the sync stopped; its
#      slot stays), once WITH sluice streaming and once with pg_recvlogical reading the
#      same changes to /dev/null (the floor for any slot consumer), back to back in an
#      order that rotates between rounds: TPS, latency, CPU shares, and sluice's lag
#      (p50/p99, source commit to target commit, from its lag histogram);
#   3. catch-up: sluice is stopped, pgbench runs 8 clients for $BENCH_CATCHUP_SECONDS s
#      (default 60), then sluice starts again and the script samples its status every
#      0.2 s until the backlog is applied; once reading over TCP, then (when the rest
#      runs over the Unix sockets) once more over the sockets;
#   4. cutover while pgbench runs: the write pause sluice reports;
#   5. verify (must be EQUAL) and finish (no slot may remain).
# The WAL retained by the slot is sampled every second throughout, and apart while sluice
# runs under load (the copy and the "with" runs): the bound sluice keeps.
# Writes the section between <!-- bench:sync:start --> and <!-- bench:sync:end --> of
# docs/BENCHMARKS.md (BENCH_DOC to write elsewhere; a BENCH_SCALE other than 10 is a dry run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec 2>&1

RUNS=${BENCH_RUNS:-5} # pgbench runs on a shared 2-core VM differ by 15% and more: more rounds, a steadier median
SCALE=${BENCH_SCALE:-10}
SECONDS_EACH=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-"1 4 8"}
CATCHUP_SECONDS=${BENCH_CATCHUP_SECONDS:-60}
if [ -n "${BENCH_DOC:-}" ]; then DOC=$BENCH_DOC
elif [ "$SCALE" = 10 ]; then DOC=$ROOT/docs/BENCHMARKS.md
else DOC=""; fi
need_sluice

DB=sluice_bench_sync
# sluice and pg_recvlogical reach the servers over their Unix sockets (BENCH_VIA=tcp:
# loopback TCP). Deployed, the slot's reader is on another machine and the source pays
# only its own side of the TCP stack; over loopback the walsender's every send also runs
# the receiving side, which about doubles the walsender's CPU here. The socket is the
# closer stand-in, and what a user running sluice on the source host should pick.
# pgbench, the application, always comes over TCP.
VIA=${BENCH_VIA:-socket}
if [ "$VIA" = socket ] && [ -n "$(pg_socket_dir)" ] && [ -n "$(my_socket)" ]; then
  SRC=$(pg_socket_url "$DB"); TGT=$(my_socket_url "$DB"); RECV_HOST=$(pg_socket_dir)
  VIA_TEXT="over the servers' Unix sockets"
else
  VIA=tcp; SRC=$(pg_url "$DB"); TGT=$(my_url "$DB"); RECV_HOST=$PG_HOST
  VIA_TEXT="over loopback TCP"
fi
# Over a Unix socket the walsender's end buffers net.core.wmem_default (PostgreSQL sets
# no SO_SNDBUF): the kernel's 208 KiB holds about 200 of its one-message packets, and a
# catch-up waits whenever sluice has not emptied it. docs/OPERATIONS.md has the host raise it to
# 4 MiB, and so does the bench (BENCH_WMEM; restored on exit). Read when a socket is
# created: set before sluice connects.
WMEM_PATH=/proc/sys/net/core/wmem_default
WMEM_ORIG=$(cat "$WMEM_PATH" 2>/dev/null || echo 0)
WMEM=${BENCH_WMEM:-4194304}
set_wmem() { [ "$(cat "$WMEM_PATH" 2>/dev/null)" = "$1" ] || { echo "$1" >"$WMEM_PATH"; } 2>/dev/null; }
if [ "$VIA" = socket ] && [ "$WMEM_ORIG" -lt "$WMEM" ]; then
  if set_wmem "$WMEM"; then WMEM_TEXT="net.core.wmem_default raised from $WMEM_ORIG to $WMEM for the run, as docs/OPERATIONS.md advises"
  else WMEM=$WMEM_ORIG; WMEM_TEXT="net.core.wmem_default $WMEM_ORIG (could not raise it: not root?)"; fi
else WMEM=$WMEM_ORIG; WMEM_TEXT="net.core.wmem_default $WMEM_ORIG"; fi
PORT=${BENCH_PORT:-7072}
API="http://127.0.0.1:$PORT"
export SLUICE_API_TOKEN=bench-$$
SLOT=sluice_bench_sync
TABLES=pgbench_accounts,pgbench_branches,pgbench_tellers
WORK=$(mktemp -d -t sluice-bench-sync.XXXXXX)
SYNC_PID=""; SAMPLER_PID=""; LOAD_PID=""
# The target's page flushing settings, which checkpoint() changes for a moment.
read -r MY_IO MY_IO_MAX MY_DIRTY <<<"$(my -Nse "SELECT @@innodb_io_capacity, @@innodb_io_capacity_max, @@innodb_max_dirty_pages_pct")"
my_flush_settings() { my -e "SET GLOBAL innodb_io_capacity_max = GREATEST($2, @@innodb_io_capacity); SET GLOBAL innodb_io_capacity = $1; SET GLOBAL innodb_io_capacity_max = $2; SET GLOBAL innodb_max_dirty_pages_pct = $3"; }
cleanup() {
  my_flush_settings "$MY_IO" "$MY_IO_MAX" "$MY_DIRTY" 2>/dev/null || true
  for p in $LOAD_PID $SAMPLER_PID; do kill "$p" 2>/dev/null || true; done
  [ -n "$SYNC_PID" ] && kill "$SYNC_PID" 2>/dev/null && wait "$SYNC_PID" 2>/dev/null
  "$SLUICE" abort --source "$SRC" --target "$TGT" --slot "$SLOT" --api "$API" >/dev/null 2>&1 || true
  pg postgres -qc "SELECT pg_drop_replication_slot('sluice_bench_floor') FROM pg_replication_slots WHERE slot_name = 'sluice_bench_floor'" >/dev/null 2>&1 || true
  set_wmem "$WMEM_ORIG" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

status() {
  curl -fsS "$API/api/v1/status" 2>/dev/null | python3 -c '
import json, sys
raw = sys.stdin.read()
if not raw.strip():
    sys.exit(1)  # the sync is not answering (yet)
st = json.loads(raw)
print(" ".join(str(st.get(f, "")) for f in sys.argv[1:]))' "$@"
}
# start_sync [SOURCE TARGET]: the URLs default to the transport the bench reads over.
start_sync() {
  "$SLUICE" sync --source "${1:-$SRC}" --target "${2:-$TGT}" --tables "$TABLES" --slot "$SLOT" --listen "127.0.0.1:$PORT" \
    --log-format json >>"$WORK/sync.out" 2>>"$WORK/sync.log" &
  SYNC_PID=$!
  for _ in $(seq 1 100); do status phase >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "sluice sync did not start; see $WORK/sync.log"
}
# wait_slot_active: until a walsender streams from the slot (its connection is made).
wait_slot_active() {
  for _ in $(seq 1 150); do
    [ "$(pg postgres -Atc "SELECT active FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null)" = t ] && return 0
    sleep 0.2
  done
  die "sluice sync did not open its replication connection within 30 s; see $WORK/sync.log"
}
stop_sync() {
  curl -sS -X POST -H "Authorization: Bearer $SLUICE_API_TOKEN" "$API/api/v1/stop" >/dev/null 2>&1 || true # the sync may close the connection as it exits
  wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=""
}
# ticks PID: CPU time (user + system, clock ticks) a process has used; machine_ticks: the
# machine's busy ticks (all CPUs).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
# checkpoint: both servers write their dirty pages out before a run, so that no run pays
# for another's: PostgreSQL's CHECKPOINT, and InnoDB's page cleaner made to flush every
# dirty page at once (it otherwise writes a catch-up's pages lazily, at 200 pages a
# second, for minutes: a random share of them in whichever runs follow).
checkpoint() {
  pg "$DB" -qc "CHECKPOINT"
  my_flush_settings 100000 100000 0
  for _ in $(seq 1 300); do
    [ "$(my -Nse "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | cut -f2)" -lt 50 ] && break
    sleep 0.2
  done
  my_flush_settings "$MY_IO" "$MY_IO_MAX" "$MY_DIRTY"
}
# run_pgbench CLIENTS SECONDS: prints "tps latency_ms" (pgbench as it runs by default:
# its pre-run vacuum of the branches and tellers, pgbench_history emptied)
run_pgbench() {
  pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -c "$1" -j "$(( $1 < 2 ? 1 : 2 ))" -T "$2" "$DB" 2>/dev/null |
    awk '/^latency average/ { lat = $4 } /^tps/ { tps = $3 } END { printf "%.1f %.3f\n", tps, lat }'
}


say "== pgbench -i -s $SCALE into $DB"
pg_recreate_db "$DB"
my_recreate_db "$DB"
pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -i -q -s "$SCALE" "$DB" >/dev/null 2>&1
pg "$DB" -c "VACUUM ANALYZE"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')

# WAL retained by the slot, sampled every second (bytes; the most kept in walmax, and in
# walmax.live while $WORK/live exists: sluice streaming under load; those samples also go
# to wal.live, for the typical figure).
( max=0; live=0; while :; do
    v=$(pg postgres -Atc "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn))::bigint, 0) FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null || echo 0)
    [ "${v:-0}" -gt "$max" ] && max=$v && echo "$max" >"$WORK/walmax"
    [ -e "$WORK/live" ] && [ "${v:-0}" -gt "$live" ] && live=$v && echo "$live" >"$WORK/walmax.live"
    [ -e "$WORK/live" ] && echo "${v:-0}" >>"$WORK/wal.live"
    sleep 1
  done ) &
SAMPLER_PID=$!

say "== 1. sluice sync while pgbench runs (4 clients)"
pg "$DB" -c "CHECKPOINT"
pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 4 -j 2 -T 3600 "$DB" >/dev/null 2>&1 &
LOAD_PID=$!
t0=$(now)
touch "$WORK/live"
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
wait_caught_up() { for _ in $(seq 1 600); do read -r lb <<<"$(status lag_bytes)"; [ "$lb" = 0 ] && return 0; sleep 0.2; done; }
wait_caught_up
rm -f "$WORK/live"

# Three ways, back to back in each round so all see the same machine: without
# sluice, with sluice, and with pg_recvlogical (PostgreSQL's own logical
# replication client, writing the stream to /dev/null: what decoding alone costs,
# the floor for any consumer of the slot). The order rotates between rounds so
# that drift over the run (table growth, autovacuum) favours none. Before every
# run a checkpoint on both servers (no run pays for another's dirty pages) and pgbench's own
# pre-run vacuum. A warm-up run first.
declare -A BASE_TPS BASE_LAT WITH_TPS WITH_LAT BT BL WT WL FT RATIOS FLOOR_RATIOS CPU_S CPU_W CPU_M
say "== 2. pgbench without sluice / with sluice / with pg_recvlogical: clients $CLIENTS, ${SECONDS_EACH}s each, $RUNS rounds"
FLOOR_SLOT=sluice_bench_floor
if command -v pg_recvlogical >/dev/null; then
  pg "$DB" -qc "CREATE PUBLICATION $FLOOR_SLOT FOR TABLE $TABLES"
  pg_recvlogical -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$DB" -S "$FLOOR_SLOT" -P pgoutput --create-slot
fi
run_pgbench 4 5 >/dev/null
wait_caught_up
HIST_ALL=()
# without C: pgbench with the sync stopped (its slot kept).
without() {
  [ -n "$SYNC_PID" ] && stop_sync
  checkpoint
  read -r tp la <<<"$(run_pgbench "$1" "$SECONDS_EACH")"; BT[$1]+="$tp "; BL[$1]+="$la "
}
# with C: pgbench while sluice streams; CPU shares and the lag histogram over the run.
with() {
  local c=$1
  [ -n "$SYNC_PID" ] || { start_sync; wait_caught_up; }
  checkpoint
  local ws_pid my_pid c0 c1 h0 h1
  ws_pid=$(pg postgres -Atc "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$SLOT'")
  my_pid=$(pidof mariadbd | cut -d' ' -f1)
  h0=$(lag_hist "$API")
  c0="$(ticks "$SYNC_PID") $(ticks "$ws_pid") $(ticks "$my_pid") $(machine_ticks)"
  touch "$WORK/live"
  read -r tw lw <<<"$(run_pgbench "$c" "$SECONDS_EACH")"; WT[$c]+="$tw "; WL[$c]+="$lw "
  SLUICE_NICE=$(awk '{ print $19 }' "/proc/$SYNC_PID/stat")
  c1="$(ticks "$SYNC_PID") $(ticks "$ws_pid") $(ticks "$my_pid") $(machine_ticks)"
  wait_caught_up # the run's last commits are part of its lag
  rm -f "$WORK/live"
  h1=$(lag_hist "$API")
  # shares of the machine's busy CPU time during the run: sluice, walsender, MariaDB
  read -r cs cw cm <<<"$(echo "$c0 $c1" | awk '{ b = $8 - $4; if (b <= 0) b = 1; printf "%.1f %.1f %.1f", 100 * ($5 - $1) / b, 100 * ($6 - $2) / b, 100 * ($7 - $3) / b }')"
  CPU_S[$c]+="$cs "; CPU_W[$c]+="$cw "; CPU_M[$c]+="$cm "
  LAST_HIST="$h0|$h1"; HIST_ALL+=("$LAST_HIST")
}
# floor C: pgbench while pg_recvlogical streams the same tables' changes to /dev/null.
floor() {
  command -v pg_recvlogical >/dev/null || { FT[$1]+="0 "; return; }
  [ -n "$SYNC_PID" ] && stop_sync
  pg_recvlogical -h "$RECV_HOST" -p "$PG_PORT" -U postgres -d "$DB" -S "$FLOOR_SLOT" -o proto_version=1 \
    -o publication_names="$FLOOR_SLOT" --status-interval 1 -f /dev/null --start 2>/dev/null &
  local rp=$!
  for _ in $(seq 1 300); do # caught up with what the other runs wrote
    [ "$(pg postgres -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) < 1000000 FROM pg_replication_slots WHERE slot_name = '$FLOOR_SLOT'")" = t ] && break
    sleep 0.2
  done
  checkpoint
  read -r tf _ <<<"$(run_pgbench "$1" "$SECONDS_EACH")"; FT[$1]+="$tf "
  kill "$rp"; wait "$rp" 2>/dev/null || true
}
ORDERS=("without with floor" "with floor without" "floor without with")
for ((r = 1; r <= RUNS; r++)); do
  for c in $CLIENTS; do
    for way in ${ORDERS[$(((r - 1) % 3))]}; do "$way" "$c"; done
    tp=$(echo "${BT[$c]}" | awk '{ print $NF }'); tw=$(echo "${WT[$c]}" | awk '{ print $NF }'); tf=$(echo "${FT[$c]}" | awk '{ print $NF }')
    RATIOS[$c]+="$(calc "$tw / $tp") "; FLOOR_RATIOS[$c]+="$(calc "$tf / $tp") "
    read -r l50 l99 _ <<<"$(lag_quantiles "$LAST_HIST")"
    say "   round $r, $c clients: without $(printf '%.0f' "$tp") tps, with sluice $(printf '%.0f' "$tw") tps (lag p50 $l50 s, p99 $l99 s), with pg_recvlogical $(printf '%.0f' "$tf") tps"
  done
done
for c in $CLIENTS; do
  # shellcheck disable=SC2086
  BASE_TPS[$c]=$(median ${BT[$c]}); BASE_LAT[$c]=$(median ${BL[$c]})
  # shellcheck disable=SC2086
  WITH_TPS[$c]=$(median ${WT[$c]}); WITH_LAT[$c]=$(median ${WL[$c]})
done
if command -v pg_recvlogical >/dev/null; then
  pg_recvlogical -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$DB" -S "$FLOOR_SLOT" --drop-slot
  pg "$DB" -qc "DROP PUBLICATION $FLOOR_SLOT"
fi
# The lag over every "with" run together (their histograms' differences summed).
read -r lag50 lag99 lagn <<<"$(lag_quantiles "${HIST_ALL[@]}")"
say "   lag while pgbench ran: p50 $lag50 s, p99 $lag99 s ($lagn target commits)"

# catch_up VIA [WMEM]: stops the sync, lets pgbench build a backlog of $CATCHUP_SECONDS s
# at 8 clients, restarts the sync reading over VIA (socket or tcp; over the socket with
# net.core.wmem_default at WMEM while it connects) and times it catching up.
# Sets CU_WAL, CU_CHANGES, CU_SECS, CU_RATE (from process start) and CU_APPLY_CHANGES,
# CU_APPLY_SECS, CU_APPLY_RATE (first applied batch → caught up).
catch_up() {
  local via=$1 t0 lsn_before lb ch
  say "== 3. catch-up over $via${2:+ (net.core.wmem_default $2)}: sluice stopped while pgbench runs 8 clients for ${CATCHUP_SECONDS}s"
  stop_sync
  lsn_before=$(pg "$DB" -Atc "SELECT pg_current_wal_lsn()")
  run_pgbench 8 "$CATCHUP_SECONDS" >/dev/null
  CU_WAL=$(pg "$DB" -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn_before')::bigint")
  t0=$(now)
  if [ "$via" = socket ]; then
    set_wmem "${2:-$WMEM}" || true
    start_sync "$(pg_socket_url "$DB")" "$(my_socket_url "$DB")"
    wait_slot_active # the walsender's socket exists: it took the setting when it was made
    set_wmem "$WMEM" || true
  else start_sync "$(pg_url "$DB")" "$(my_url "$DB")"; fi
  # Samples "seconds-since-start changes lag_bytes" until the lag is 0.
  : >"$WORK/catchup.samples"
  while :; do
    read -r lb ch <<<"$(status lag_bytes changes_applied)"
    echo "$(elapsed "$t0") ${ch:-0} ${lb:-1}" >>"$WORK/catchup.samples"
    [ "$lb" = 0 ] && break
    sleep 0.2
  done
  CU_SECS=$(elapsed "$t0")
  read -r CU_CHANGES <<<"$(status changes_applied)"
  CU_RATE=$(calc "$CU_CHANGES / $CU_SECS")
  # The apply rate: from the first sample that shows changes applied to the last, so the
  # process start, connections and the first batch's decoding are left out.
  read -r CU_APPLY_CHANGES CU_APPLY_SECS <<<"$(awk '$2 > 0 && !f { f = 1; t0 = $1; c0 = $2 } { t = $1; c = $2 } END { printf "%d %.3f\n", c - c0, t - t0 }' "$WORK/catchup.samples")"
  CU_APPLY_RATE=$(awk -v c="$CU_APPLY_CHANGES" -v t="$CU_APPLY_SECS" 'BEGIN { printf "%.0f", (t > 0) ? c / t : 0 }')
  say "   applied $CU_CHANGES changes ($(human_count "$CU_WAL") bytes of WAL) in $CU_SECS s from process start: $(printf '%.0f' "$CU_RATE") changes/s; apply rate $CU_APPLY_RATE changes/s ($CU_APPLY_CHANGES changes in $CU_APPLY_SECS s)"
}
# Over TCP, the way a deployed sluice reads the slot; then, when the rest ran over the
# Unix socket, over it: with the host's buffer as the bench set it, and with the kernel's
# default, where the walsender waits whenever its 200 or so packets fill the socket.
catch_up tcp
catchup_rows=$(printf '| catch-up after a stop, over TCP (8 clients for %s s: %s bytes of WAL), from process start | %s changes in %s s = %.0f changes/s |\n| catch-up apply rate over TCP (first applied batch → caught up) | %s changes in %s s = %s changes/s |' \
  "$CATCHUP_SECONDS" "$(human_count "$CU_WAL")" "$(human_count "$CU_CHANGES")" "$CU_SECS" "$CU_RATE" "$(human_count "$CU_APPLY_CHANGES")" "$CU_APPLY_SECS" "$(human_count "$CU_APPLY_RATE")")
apply_rate=$CU_APPLY_RATE
catchup_goal="$(human_count "$CU_APPLY_RATE") changes/s over TCP (apply rate)"
socket_rate=""
default_rate=""
if [ "$VIA" = socket ]; then
  catch_up socket
  socket_rate=$CU_APPLY_RATE
  catchup_rows+=$'\n'$(printf '| catch-up apply rate over the Unix socket, net.core.wmem_default %s (a backlog of %s bytes of WAL) | %s changes in %s s = %s changes/s |' \
    "$(human_count "$WMEM")" "$(human_count "$CU_WAL")" "$(human_count "$CU_APPLY_CHANGES")" "$CU_APPLY_SECS" "$(human_count "$CU_APPLY_RATE")")
  catchup_goal+="; $(human_count "$CU_APPLY_RATE") over the Unix socket"
  if [ "$WMEM" != "$WMEM_ORIG" ]; then
    catch_up socket "$WMEM_ORIG"
    catchup_rows+=$'\n'$(printf '| the same with the kernel default net.core.wmem_default %s (a backlog of %s bytes of WAL) | %s changes in %s s = %s changes/s |' \
      "$(human_count "$WMEM_ORIG")" "$(human_count "$CU_WAL")" "$(human_count "$CU_APPLY_CHANGES")" "$CU_APPLY_SECS" "$(human_count "$CU_APPLY_RATE")")
    catchup_goal+=" ($(human_count "$CU_APPLY_RATE") with the kernel's default socket buffer)"
    default_rate=$CU_APPLY_RATE
    # sluice must have said so: that warning is how a user learns of the setting
    if ! grep -q SLUICE-SOCKET-BUFFER "$WORK/sync.log"; then
      die "sluice read the slot over a socket with net.core.wmem_default $WMEM_ORIG and did not log SLUICE-SOCKET-BUFFER; see $WORK/sync.log"
    fi
  fi
fi
stop_sync
start_sync

say "== 4. cutover while pgbench runs (4 clients)"
pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 4 -j 2 -T 3600 "$DB" >/dev/null 2>&1 &
LOAD_PID=$!
sleep 5
cut_out=$("$SLUICE" cutover --api "$API" 2>>"$WORK/sync.log")
pause_ms=$(printf '%s\n' "$cut_out" | sed -n 's/.*write pause \([0-9.]*\) ms.*/\1/p')
# Where the pause went, from sync's log line for the fenced section.
pause_parts=$(grep '"cutover fenced section"' "$WORK/sync.log" | tail -1 | python3 -c '
import json, sys
line = sys.stdin.read().strip()
r = json.loads(line) if line else {}
names = {"lock_wait_ms": "lock wait", "drain_ms": "drain", "verify_ms": "verify", "auto_increment_and_commit_ms": "AUTO_INCREMENT and commit"}
parts = ["%s %s ms" % (names[k], r[k]) for k in names if k in r]
if "rows_verified" in r:
    parts.append("%s rows verified under the fence" % r["rows_verified"])
print(", ".join(parts))' 2>/dev/null || true)
say "   $cut_out"
kill "$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=""
for _ in $(seq 1 120); do read -r lb <<<"$(status lag_bytes)"; [ "$lb" = 0 ] && break; sleep 0.5; done

say "== 5. verify and finish"
verify_out=$("$SLUICE" verify --source "$SRC" --target "$TGT" --tables "$TABLES" 2>>"$WORK/sync.log") && verify_rc=0 || verify_rc=$?
verdict=$(printf '%s\n' "$verify_out" | sed -n 's/^verify: \([A-Z]*\).*/\1/p')
"$SLUICE" finish --source "$SRC" --target "$TGT" --slot "$SLOT" --api "$API" >/dev/null 2>>"$WORK/sync.log"
wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=""
kill "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
rereads=$(grep -c 'SLUICE-SYNC-REREAD' "$WORK/sync.log" || true)
cp "$WORK/sync.log" "${TMPDIR:-/tmp}/sluice-bench-sync.log" 2>/dev/null || true
slots=$(pg postgres -Atc "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")
walmax=$(cat "$WORK/walmax" 2>/dev/null || echo 0)
walmax_live=$(cat "$WORK/walmax.live" 2>/dev/null || echo 0)
# shellcheck disable=SC2046
wal_live_median=$(median $(cat "$WORK/wal.live" 2>/dev/null || echo 0))
wal_live_samples=$(wc -l <"$WORK/wal.live" 2>/dev/null || echo 0)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
machine_facts
say "   verify: $verdict; slots left: $slots"

met() { [ "$1" = 1 ] && echo "met" || echo "**not met**"; }
worst_ratio=""
worst_floor=""
rows=""
for c in $CLIENTS; do
  # shellcheck disable=SC2086
  ratio=$(median ${RATIOS[$c]}) # pair by pair: each round's two runs saw the same machine
  worst_ratio=$(awk -v a="${worst_ratio:-$ratio}" -v b="$ratio" 'BEGIN { print (b < a) ? b : a }')
  # shellcheck disable=SC2086
  # shellcheck disable=SC2086
  floor_raw=$(median ${FLOOR_RATIOS[$c]})
  floor_ratio=$(printf '%.2f' "$floor_raw")
  [ "$floor_ratio" = 0.00 ] && floor_ratio=$(printf '%s' "-") || worst_floor=$(awk -v a="${worst_floor:-$floor_raw}" -v b="$floor_raw" 'BEGIN { print (b < a) ? b : a }')
  # shellcheck disable=SC2086
  rows+=$(printf '| %s | %.0f | %.2f | %.0f | %.2f | %.2f | %.0f | %s | %s / %s / %s |\n' "$c" "${BASE_TPS[$c]}" "${BASE_LAT[$c]}" "${WITH_TPS[$c]}" "${WITH_LAT[$c]}" "$ratio" \
    "$(median ${FT[$c]})" "$floor_ratio" \
    "$(printf '%.1f' "$(median ${CPU_S[$c]})")" "$(printf '%.1f' "$(median ${CPU_W[$c]})")" "$(printf '%.1f' "$(median ${CPU_M[$c]})")")$'\n'
done
g_lag=$(awk -v v="$lag99" 'BEGIN { print (v < 1.0) ? 1 : 0 }')
g_catch=$(awk -v v="$apply_rate" 'BEGIN { print (v >= 50000) ? 1 : 0 }')
g_catch_socket=$(awk -v v="${socket_rate:-0}" 'BEGIN { print (v >= 50000) ? 1 : 0 }')
g_catch_default=$(awk -v v="${default_rate:-0}" 'BEGIN { print (v >= 50000) ? 1 : 0 }')
g_pause=$(awk -v v="${pause_ms:-99999}" 'BEGIN { print (v < 100) ? 1 : 0 }')
g_tps=$(awk -v v="$worst_ratio" 'BEGIN { print (v >= 0.9) ? 1 : 0 }')
cmd="make bench"

cat >"$WORK/section.md" <<EOF
<!-- bench:sync:start -->
## Live sync under pgbench: \`sluice sync\` of pgbench_accounts, _branches, _tellers

Written by \`scripts/bench-sync.sh\` (run by \`$cmd\`); rerun it to refresh this section.

- Date: $started; load average $load_before before, $load_after after
- Machine: $(nproc) CPUs ($cpu), $mem RAM; PostgreSQL $pg_ver, MariaDB $my_ver on the same machine; pgbench connects over TCP (127.0.0.1), sluice and pg_recvlogical $VIA_TEXT (\`BENCH_VIA=$VIA\`); $WMEM_TEXT
- sluice commit $commit; \`sluice sync\` defaults (batch of up to 5000 changes or 500 ms; once streaming, one core and nice $SLUICE_NICE as read from /proc during the runs)
- Data: \`pgbench -i -s $SCALE\`; workload: pgbench's default TPC-B-like script (with its pre-run vacuum); $RUNS rounds of ${SECONDS_EACH} s per client count, each round running without sluice, with sluice and with pg_recvlogical back to back in an order that rotates between rounds, a CHECKPOINT before every run (and the target's dirty pages flushed); medians

| pgbench clients | TPS without sluice | latency ms | TPS with sluice streaming | latency ms | with sluice / without (median of the rounds' ratios) | TPS with pg_recvlogical to /dev/null | pg_recvlogical / without | % of busy CPU while sluice streams: sluice / walsender / MariaDB |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
$rows
| figure | measured |
|---|---|
| copy time of the 3 tables under load (4 pgbench clients) | $copy_secs s |
| lag while pgbench ran (source commit → target commit, every "with" run's target commits together, from the lag histogram) | p50 $(printf '%.3f' "$lag50") s, p99 $(printf '%.3f' "$lag99") s ($lagn target commits) |
$catchup_rows
| most WAL retained by the slot while sluice ran under load (the copy and the "with" runs; sampled every second) | $(human_count "$walmax_live") bytes |
| WAL the slot typically retained then (median of those $wal_live_samples samples. PostgreSQL frees a logical slot's WAL only up to its last running-transactions record, logged every 15 s and at a CHECKPOINT, so the slot holds up to 15 s of WAL whoever reads it, and after each run's CHECKPOINT full-page writes make that much; the most is at the start of a run, after sluice was stopped for the others) | $(human_count "$(printf '%.0f' "$wal_live_median")") bytes |
| most WAL retained by the slot over the whole run, sluice's stops included (the "without" and pg_recvlogical runs, the catch-up backlogs) | $(human_count "$walmax") bytes |
| cutover write pause (lock requested → done, 4 clients writing) | ${pause_ms:-?} ms ($pause_parts) |
| verify after cutover | $verdict |
| chunks read again (a commit raced the low watermark) | ${rereads:-0} |

| goal (from the issue) | measured | |
|---|---|---|
| lag p99 under 1 s at the rate pgbench reaches | $(printf '%.3f' "$lag99") s | $(met "$g_lag") |
| catch-up at 50,000 changes/s or more | $catchup_goal | $(met "$g_catch") over TCP${socket_rate:+; $(met "$g_catch_socket") over the Unix socket}${default_rate:+; $(met "$g_catch_default") over it at the kernel default} |
| write pause under 100 ms | ${pause_ms:-?} ms | $(met "$g_pause") |
| pgbench TPS with sluice ≥ 90% of without | worst ratio $(printf '%.3f' "$worst_ratio") (pg_recvlogical to /dev/null: $([ -n "${worst_floor:-}" ] && printf '%.3f' "$worst_floor" || echo "not measured")) | $(met "$g_tps") |

A "change" is one row change applied (pgbench's transaction updates three rows and
inserts into pgbench_history, which is not migrated). The machine has 2 cores shared by
pgbench, PostgreSQL, MariaDB and sluice, and at 8 clients pgbench keeps them busy: every
CPU second sluice, the walsender (PostgreSQL decoding the WAL for the slot) and MariaDB
(applying) use is taken from pgbench, and each commit now also wakes the walsender.
The pg_recvlogical column is the floor for any tool that reads a logical slot here:
PostgreSQL's own client, streaming the same tables' changes and throwing them away.
Deployed, sluice and the target run on other machines and the source pays for the
walsender (the middle figure of the last column) and its side of the network. Over
loopback TCP the walsender also pays for the receiving side of every packet it sends,
which no deployment charges to the source: \`BENCH_VIA=tcp\` measures that way, and
docs/DESIGN-NOTES.md gives both. Catching up is measured over TCP, as deployed, and over
the Unix socket: a Unix socket holds only what the walsender's send buffer does, the
host's net.core.wmem_default (PostgreSQL sets none); at the kernel's default, about 200
of its one-message packets, the walsender waits whenever sluice has not emptied it yet
(sluice reads it ahead into memory to keep that short) and catching up is slower; see
docs/OPERATIONS.md. "Without sluice" is the sync stopped, its slot kept.
<!-- bench:sync:end -->
EOF
[ -z "$DOC" ] || write_section sync "$WORK/section.md" "$DOC"
cat "$WORK/section.md"
[ "$verdict" = EQUAL ] && [ "$slots" = 0 ] || { say "bench-sync: FAILED (verify $verdict, slots left $slots)"; exit 1; }
