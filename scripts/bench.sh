#!/usr/bin/env bash
# sluice copy benchmark (make bench).
#
# Loads pgbench_accounts (pgbench -i -s $BENCH_SCALE: 100,000 rows per scale unit)
# into the PostgreSQL database sluice_bench, then for $BENCH_RUNS rounds times, in
# alternating order:
#   baseline  psql \copy pgbench_accounts to stdout | mariadb LOAD DATA LOCAL INFILE
#             into an empty table of the same shape (MariaDB database sluice_bench_baseline)
#   sluice    bin/sluice copy --tables pgbench_accounts into a freshly created MariaDB
#             database sluice_bench (wall time and peak RSS via /usr/bin/time -v)
# and after each sluice copy, bin/sluice verify --tables pgbench_accounts.
# Then writes the section between <!-- bench:copy:start --> and <!-- bench:copy:end -->
# of docs/BENCHMARKS.md (other sections are left alone) and prints it.
#
# Environment:
#   BENCH_RUNS   rounds (default 3)
#   BENCH_SCALE  pgbench scale (default 10 = 1,000,000 rows). A run at another scale is
#                a dry run: it prints the section but leaves docs/BENCHMARKS.md alone
#                unless BENCH_DOC names a file to write.
#   BENCH_DOC    the file to write (default docs/BENCHMARKS.md)
# Exits 1 if a copy fails, row counts disagree or verify does not report EQUAL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec 2>&1

RUNS=${BENCH_RUNS:-3}
SCALE=${BENCH_SCALE:-10}
case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a whole number >= 1" ;; esac
case $SCALE in '' | *[!0-9]* | 0) die "BENCH_SCALE must be a whole number >= 1" ;; esac
if [ -n "${BENCH_DOC:-}" ]; then DOC=$BENCH_DOC
elif [ "$SCALE" = 10 ]; then DOC=$ROOT/docs/BENCHMARKS.md
else DOC=""; fi
need_sluice

PG_DB=sluice_bench
MY_DB=sluice_bench            # sluice's target, recreated for every run
MY_BASE_DB=sluice_bench_baseline
TABLE=pgbench_accounts
SRC=$(pg_url "$PG_DB")
TGT=$(my_url "$MY_DB")
WORK=$(mktemp -d -t sluice-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Same shape as the table sluice creates (see `sluice plan --tables pgbench_accounts`).
BASELINE_DDL="CREATE TABLE \`$TABLE\` (
  \`aid\` INT NOT NULL,
  \`bid\` INT NULL,
  \`abalance\` INT NULL,
  \`filler\` CHAR(84) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NULL,
  PRIMARY KEY (\`aid\`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"

# ---------- peak RSS: /usr/bin/time -v, else poll /proc/PID/status VmHWM ----------
if [ ! -x /usr/bin/time ]; then
  say "bench: installing GNU time for /usr/bin/time -v"
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >/dev/null 2>&1 || true
fi
if [ -x /usr/bin/time ] && [[ $(/usr/bin/time -v true 2>&1) == *'Maximum resident set size'* ]]; then
  RSS_METHOD="measured with GNU \`/usr/bin/time -v\`"
else
  RSS_METHOD="VmHWM from /proc/PID/status, polled every 0.1 s"
fi

# measure NAME CMD...: run CMD (stdout to $WORK/NAME.out, stderr to $WORK/NAME.err);
# sets WALL (s), RSS_KB and RC.
measure() {
  local name=$1; shift
  local t0; t0=$(now)
  RC=0; RSS_KB=0
  if [[ $RSS_METHOD == measured* ]]; then
    /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || RC=$?
    WALL=$(elapsed "$t0")
    RSS_KB=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$WORK/$name.time")
  else
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$! hwm
    while kill -0 "$pid" 2>/dev/null; do
      hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$hwm" ] && [ "$hwm" -gt "$RSS_KB" ] && RSS_KB=$hwm
      sleep 0.1
    done
    wait "$pid" || RC=$?
    WALL=$(elapsed "$t0")
  fi
  : "${RSS_KB:=0}"
}

fail_with() { # fail_with NAME MESSAGE: show the step's output and stop
  say "bench: $2"
  tail -n 20 "$WORK/$1.out" "$WORK/$1.err" 2>/dev/null >&2 || true
  exit 1
}

# ---------- the source ----------
ROWS=$((SCALE * 100000))
say "== source: pgbench -i -s $SCALE into PostgreSQL database $PG_DB ($(human_count $ROWS) rows in $TABLE)"
pg_recreate_db "$PG_DB"
pgbench -i -s "$SCALE" -q -h "$PG_HOST" -p "$PG_PORT" -U postgres "$PG_DB" >"$WORK/pgbench.log" 2>&1 ||
  { cat "$WORK/pgbench.log" >&2; die "pgbench -i failed"; }
pg "$PG_DB" -c "ANALYZE $TABLE"
src_rows=$(pg "$PG_DB" -Atc "SELECT count(*) FROM $TABLE")
[ "$src_rows" = "$ROWS" ] || die "expected $ROWS rows in $TABLE, found $src_rows"

run_baseline() {
  my -e "DROP DATABASE IF EXISTS \`$MY_BASE_DB\`; CREATE DATABASE \`$MY_BASE_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
  my -D "$MY_BASE_DB" -e "$BASELINE_DDL"
  local t0; t0=$(now)
  local rc=0
  psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$PG_DB" -X -q -v ON_ERROR_STOP=1 -c "\\copy $TABLE to stdout" |
    mariadb -uroot -h"$MY_HOST" -P"$MY_PORT" -D "$MY_BASE_DB" --local-infile=1 \
      -e "LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE $TABLE" 2>"$WORK/baseline.err" || rc=$?
  B_WALL=$(elapsed "$t0")
  [ $rc = 0 ] || fail_with baseline "baseline copy failed (exit $rc)"
  local n; n=$(my -N -D "$MY_BASE_DB" -e "SELECT COUNT(*) FROM $TABLE")
  [ "$n" = "$ROWS" ] || fail_with baseline "baseline loaded $n rows, expected $ROWS"
}

run_sluice() {
  my_recreate_db "$MY_DB"
  measure copy "$SLUICE" copy --tables "$TABLE" --source "$SRC" --target "$TGT"
  S_WALL=$WALL S_RSS=$RSS_KB
  [ "$RC" = 0 ] || fail_with copy "sluice copy failed (exit $RC)"
  local n; n=$(my -N -D "$MY_DB" -e "SELECT COUNT(*) FROM $TABLE")
  [ "$n" = "$ROWS" ] || fail_with copy "sluice copied $n rows, expected $ROWS"
}

run_verify() {
  measure verify "$SLUICE" verify --tables "$TABLE" --source "$SRC" --target "$TGT"
  V_WALL=$WALL V_RSS=$RSS_KB V_RC=$RC
  V_VERDICT=$(sed -n 's/^verify: \([A-Z]*\).*/\1/p' "$WORK/verify.out" | tail -n 1)
  case $V_RC in
    0) [ "$V_VERDICT" = EQUAL ] || V_VERDICT="${V_VERDICT:-no verdict}" ;;
    1) V_VERDICT=DIFFERENT ;;
    *) V_VERDICT="ERROR (exit $V_RC)" ;;
  esac
  if [ "$V_VERDICT" != EQUAL ]; then
    say "bench: verify: $V_VERDICT"
    tail -n 20 "$WORK/verify.out" "$WORK/verify.err" >&2 || true
  fi
}

mib() { calc "$1 / 1024"; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
declare -a R_SAME R_ORDER R_BASE R_SLUICE R_RSS R_VERIFY R_VRSS R_VERDICT R_RATIO R_VRATIO
all_equal=1
for ((i = 1; i <= RUNS; i++)); do
  if ((i % 2)); then order="baseline, sluice"; else order="sluice, baseline"; fi
  if ((i % 2)); then run_baseline; run_sluice; else run_sluice; run_baseline; fi
  run_verify
  [ "$V_VERDICT" = EQUAL ] || all_equal=0
  # cross-check outside the timing: both copies must have produced the same table
  sums=$(my -N -e "CHECKSUM TABLE \`$MY_DB\`.$TABLE, \`$MY_BASE_DB\`.$TABLE" | awk '{ print $2 }' | sort -u | wc -l)
  if [ "$sums" = 1 ]; then R_SAME[i]=yes; else R_SAME[i]=NO; all_equal=0; say "bench: CHECKSUM TABLE differs between the sluice and baseline copies"; fi
  R_ORDER[i]=$order R_BASE[i]=$B_WALL R_SLUICE[i]=$S_WALL R_RSS[i]=$S_RSS
  R_VERIFY[i]=$V_WALL R_VRSS[i]=$V_RSS R_VERDICT[i]=$V_VERDICT
  R_RATIO[i]=$(calc "$S_WALL / $B_WALL")
  R_VRATIO[i]=$(calc "$V_WALL / $B_WALL")
  printf '   round %d/%d (%s): baseline %6.2f s | sluice copy %6.2f s, %5.1f MiB peak | ratio %.2f | verify %6.2f s %s | same checksum: %s\n' \
    "$i" "$RUNS" "$order" "$B_WALL" "$S_WALL" "$(mib "$S_RSS")" "${R_RATIO[i]}" "$V_WALL" "$V_VERDICT" "${R_SAME[i]}"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------- figures ----------
med_base=$(median "${R_BASE[@]}")
med_sluice=$(median "${R_SLUICE[@]}")
med_verify=$(median "${R_VERIFY[@]}")
med_ratio=$(median "${R_RATIO[@]}")
med_vratio=$(median "${R_VRATIO[@]}")
med_rss_kb=$(median "${R_RSS[@]}")
max_rss_kb=$(printf '%s\n' "${R_RSS[@]}" | sort -n | tail -n 1)
max_vrss_kb=$(printf '%s\n' "${R_VRSS[@]}" | sort -n | tail -n 1)
max_rss_mib=$(mib "$max_rss_kb")
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f–%.2f", lo, hi }'; }
range_ratio=$(range "${R_RATIO[@]}")
range_vratio=$(range "${R_VRATIO[@]}")

verdict() { if [ "$1" = 1 ]; then echo "**met**"; else echo "**not met**"; fi; }
goal_copy=$(awk -v r="$med_ratio" 'BEGIN { print (r <= 1.0) ? 1 : 0 }')
goal_rss=$(awk -v m="$max_rss_mib" 'BEGIN { print (m < 200) ? 1 : 0 }')
goal_verify=$(awk -v r="$med_vratio" 'BEGIN { print (r <= 1.0) ? 1 : 0 }')

machine_facts
cmd="make bench"
[ "$RUNS" = 3 ] || cmd="BENCH_RUNS=$RUNS $cmd"
[ "$SCALE" = 10 ] || cmd="BENCH_SCALE=$SCALE $cmd"

section() {
  cat <<EOF
<!-- bench:copy:start -->
## Copy: \`sluice copy\` vs. offline \`\\copy | LOAD DATA\` (pgbench_accounts)

Written by \`scripts/bench.sh\`; rerun \`$cmd\` to refresh this section.

- Command: \`$cmd\` (BENCH_RUNS=$RUNS, BENCH_SCALE=$SCALE)
- Date: $started
- Machine: $(nproc) CPUs ($cpu), $mem RAM; load average $load_before before, $load_after after
- PostgreSQL $pg_ver, MariaDB $my_ver, both on 127.0.0.1 as set up by \`scripts/services.sh\`
- sluice commit $commit, default copy settings (\`--parallel 4 --chunk-rows 20000\`)
- Data: \`pgbench -i -s $SCALE\`: $(human_count "$ROWS") rows in \`pgbench_accounts\` (aid int primary key, bid int, abalance int, filler char(84))

Each round runs both copies, in alternating order, each into an empty MariaDB table
(the database is dropped and recreated first, outside the timing):

- **baseline** (offline, no chunking, no resume, no checks):
  \`psql -c "\\copy pgbench_accounts to stdout" | mariadb --local-infile=1 -e "LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE pgbench_accounts"\`
  into a table of the same shape (PRIMARY KEY (aid)).
- **sluice copy**: \`bin/sluice copy --tables pgbench_accounts\` into a fresh database (sluice creates the table).
- **verify**: \`bin/sluice verify --tables pgbench_accounts\` after the sluice copy.

Times are wall clock in seconds, measured by the script around each command.
Peak RSS is sluice's maximum resident set size ($RSS_METHOD).

| round | order | baseline copy (s) | sluice copy (s) | sluice / baseline | sluice peak RSS (MiB) | verify (s) | verify / baseline | verify peak RSS (MiB) | verify result | same CHECKSUM TABLE as baseline |
|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|
EOF
  for ((i = 1; i <= RUNS; i++)); do
    printf '| %d | %s | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %.1f | %s | %s |\n' "$i" "${R_ORDER[i]}" \
      "${R_BASE[i]}" "${R_SLUICE[i]}" "${R_RATIO[i]}" "$(mib "${R_RSS[i]}")" "${R_VERIFY[i]}" "${R_VRATIO[i]}" \
      "$(mib "${R_VRSS[i]}")" "${R_VERDICT[i]}" "${R_SAME[i]}"
  done
  printf '| **median** | | **%.2f** | **%.2f** | **%.2f** | **%.1f** | **%.2f** | **%.2f** | | | |\n' \
    "$med_base" "$med_sluice" "$med_ratio" "$(mib "$med_rss_kb")" "$med_verify" "$med_vratio"
  cat <<EOF

Ratios are the median of the per-round ratios (each round's two copies ran back to back,
so they saw similar machine load), not the ratio of the medians.

| goal (from the issue) | measured | |
|---|---|---|
| sluice copy time ≤ 1.0× baseline copy | $(printf '%.2f' "$med_ratio")× (median $(printf '%.2f' "$med_sluice") s vs $(printf '%.2f' "$med_base") s; rounds $range_ratio×) | $(verdict "$goal_copy") |
| sluice peak memory < 200 MiB | $(printf '%.1f' "$max_rss_mib") MiB (highest of $RUNS copies; verify peaked at $(printf '%.1f' "$(mib "$max_vrss_kb")") MiB) | $(verdict "$goal_rss") |
| sluice verify time ≤ baseline copy time | $(printf '%.2f' "$med_vratio")× (median $(printf '%.2f' "$med_verify") s vs $(printf '%.2f' "$med_base") s; rounds $range_vratio×) | $(verdict "$goal_verify") |

The machine may have been running other work at the same time (see the load averages
above), so absolute times are noisy; the per-round ratios are the figures to compare.
<!-- bench:copy:end -->
EOF
}

section >"$WORK/section.md"
[ -z "$DOC" ] || write_section copy "$WORK/section.md" "$DOC"

echo
cat "$WORK/section.md"
echo
if [ -n "$DOC" ]; then say "bench: wrote $DOC"; else say "bench: dry run (BENCH_SCALE=$SCALE): $ROOT/docs/BENCHMARKS.md left alone; set BENCH_DOC to write a file"; fi
[ "$all_equal" = 1 ] || { say "bench: FAILED: verify did not report EQUAL, or the checksums differed, in some round"; exit 1; }
