#!/usr/bin/env bash
# sluice events benchmark (run by make bench).
#
# Measures how many changes per second reach MariaDB, batch commit on (--batch-rows 5000),
# through the two topologies of docs/EVENTS.md, for $BENCH_RUNS rounds:
#
#   events      one `sluice sync --changes=events` applier: $BENCH_EVENTS upsert events over
#               $BENCH_KEYS rows (each row twice, in version order) are put on a JetStream
#               stream first (examples/likes-v1 gen), then sluice is started and the rate is
#               taken from its status (first batch received to last batch committed).
#   apply 1/1   `sluice sync --publish … --partitions 1` publishes $BENCH_EVENTS row changes
#               (an INSERT of $BENCH_KEYS rows, then an UPDATE of all of them); once they are in
#               JetStream, one `sluice apply --partition 0/1` applies them.
#   apply i/3   the same published for 3 partitions, applied by three `sluice apply` at once.
#
# The table is the demo's likes table mapped to V2 (renamed columns and a computed column
# evaluated on the source), so every batch is also evaluated on PostgreSQL. Every run ends
# with sluice verify, which must say EQUAL. The partitioned rate is the total applied over
# the span from the first applier's first batch to the last applier's last commit.
# Writes the section between <!-- bench:events:start --> and <!-- bench:events:end --> of
# docs/BENCHMARKS.md (other sections are left alone) and prints it.
#
# Environment:
#   BENCH_RUNS    rounds (default 3)
#   BENCH_EVENTS  changes per measurement (default 600000; another value is a dry run that
#                 leaves docs/BENCHMARKS.md alone unless BENCH_DOC names a file)
#   BENCH_KEYS    rows (default BENCH_EVENTS / 2)
#   BENCH_DOC     the file to write (default docs/BENCHMARKS.md)
#   NATS_URL      default nats://127.0.0.1:4222
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec 2>&1

RUNS=${BENCH_RUNS:-3}
EVENTS=${BENCH_EVENTS:-600000}
KEYS=${BENCH_KEYS:-$((EVENTS / 2))}
NATS=${NATS_URL:-nats://127.0.0.1:4222}
case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a whole number >= 1" ;; esac
case $EVENTS in '' | *[!0-9]* | 0) die "BENCH_EVENTS must be a whole number >= 1" ;; esac
[ "$((KEYS * 2))" = "$EVENTS" ] || [ -n "${BENCH_KEYS:-}" ] || die "BENCH_EVENTS must be even (the partitioned runs insert and update BENCH_EVENTS/2 rows)"
if [ -n "${BENCH_DOC:-}" ]; then DOC=$BENCH_DOC
elif [ "$EVENTS" = 600000 ]; then DOC=$ROOT/docs/BENCHMARKS.md
else DOC=""; fi
need_sluice
# One run at a time: two would share the databases, the slot and the machine.
exec 9>"${TMPDIR:-/tmp}/sluice-bench-events.lock"
flock -n 9 || die "another bench-events.sh is running (lock ${TMPDIR:-/tmp}/sluice-bench-events.lock); wait for it"
DB=sluice_bench_events
SRC=$(pg_url "$DB")
TGT=$(my_url "$DB")
SLOT=sluice_bench_events
WORK=$(mktemp -d -t sluice-bench-events.XXXXXX)
V1="$ROOT/bin/likes-v1"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
(cd "$ROOT" && go build -o "$V1" ./examples/likes-v1) || die "build likes-v1"
cat >"$WORK/sluice.yaml" <<'YAML'
tables:
  likes:
    rename: post_likes
    columns:
      user_id:    {rename: member_id}
      created_at: {rename: liked_at}
    computed:
      - name: liked_on
        expr: "(created_at AT TIME ZONE 'UTC')::date"
YAML
export SLUICE_API_TOKEN=bench-events-$RANDOM$RANDOM
PORT=$((17300 + RANDOM % 500))

fail_with() { # fail_with MESSAGE LOG...
  say "bench-events: $1"
  shift
  tail -n 20 "$@" 2>/dev/null >&2 || true
  exit 1
}

fresh() { # fresh: empty databases (and no slot) for one measurement
  pg postgres -Atc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" >/dev/null
  pg_recreate_db "$DB" >/dev/null
  my_recreate_db "$DB"
  "$V1" seed --source "$SRC" --users 0 --posts 0 >/dev/null
}

# cpu_mark: prints "idle total" jiffies of all CPUs; cpu_idle MARK: idle % since MARK.
cpu_mark() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print $5 + $6, t }' /proc/stat; }
cpu_idle() { cpu_mark | awk -v a="$1" 'BEGIN { split(a, m, " ") } { printf "%.0f", 100 * ($1 - m[1]) / (($2 - m[2]) > 0 ? ($2 - m[2]) : 1) }'; }

status() { curl -sS -H "Authorization: Bearer $SLUICE_API_TOKEN" "http://127.0.0.1:$1/api/v1/status"; }

run_verify() { # run_verify NAME: sets VERDICT
  local out
  out=$("$SLUICE" verify --source "$SRC" --target "$TGT" --config "$WORK/sluice.yaml" 2>"$WORK/$1-verify.err") || true
  VERDICT=$(printf '%s\n' "$out" | sed -n 's/^verify: \([A-Z]*\).*/\1/p' | tail -n 1)
  VERDICT=${VERDICT:-ERROR}
}

# events ROUND: one events applier; sets RATE and VERDICT.
events() {
  local stream=BENCH_EVENTS_$1_$RANDOM port=$PORT pid s="" i done=0
  fresh
  "$V1" drop-stream --events "$NATS/$stream"
  local sync=("$SLUICE" sync --changes=events --events "$NATS/$stream" --source "$SRC" --target "$TGT"
    --config "$WORK/sluice.yaml" --listen "127.0.0.1:$port" --batch-rows 5000)
  # prepare the target (empty copy), then stop, fill the stream and start again
  "${sync[@]}" >"$WORK/events.log" 2>&1 & pid=$!; PIDS+=("$pid")
  local deadline=$((SECONDS + 120))
  until status "$port" 2>/dev/null | grep -q '"caught_up": true' || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
  kill -TERM "$pid"; wait "$pid" || fail_with "events: sluice sync failed" "$WORK/events.log"
  "$V1" gen --source "$SRC" --events "$NATS/$stream" --count "$EVENTS" --keys "$KEYS" 2>"$WORK/gen.log" || fail_with "events: likes-v1 gen failed" "$WORK/gen.log"
  "${sync[@]}" >"$WORK/events.log" 2>&1 & pid=$!; PIDS+=("$pid")
  deadline=$((SECONDS + 600))
  while [ $SECONDS -lt $deadline ]; do
    sleep 0.2
    s=$(status "$port" 2>/dev/null) || continue
    [ "$(printf '%s' "$s" | python3 -c 'import json,sys; e=json.load(sys.stdin)["events"]; print(int(e["caught_up"] and e["events_applied"] + e["events_ignored"] >= '"$EVENTS"'))')" = 1 ] && { done=1; break; }
  done
  [ "$done" = 1 ] || fail_with "events: not all $EVENTS events applied" "$WORK/events.log"
  RATE=$(printf '%s' "$s" | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["events"]["events_per_second"])')
  kill -TERM "$pid"; wait "$pid" || fail_with "events: sluice sync failed" "$WORK/events.log"
  "$V1" drop-stream --events "$NATS/$stream"
  run_verify events
}

# partitioned ROUND N: publish, then N appliers; sets RATE and VERDICT.
partitioned() {
  local n=$2 stream=BENCH_APPLY_$1_$2_$RANDOM port=$((PORT + 1)) pub i p s published
  fresh
  "$V1" drop-stream --events "$NATS/$stream"
  "$SLUICE" sync --publish "$NATS/$stream" --partitions "$n" --slot "$SLOT" --source "$SRC" --target "$TGT" \
    --config "$WORK/sluice.yaml" --listen "127.0.0.1:$port" >"$WORK/publish.log" 2>&1 & pub=$!; PIDS+=("$pub")
  local deadline=$((SECONDS + 120))
  until status "$port" >/dev/null 2>&1 || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
  sleep 1 # the slot exists once the API answers; the copy of the empty table is published
  pg "$DB" -c "INSERT INTO likes SELECT k / 100 + 1, k % 100 + 1, timestamptz '2024-06-01 00:00:00+00' + k * interval '1 microsecond'
               FROM generate_series(0, $KEYS - 1) k" -c "UPDATE likes SET created_at = created_at + interval '1 day'"
  deadline=$((SECONDS + 600)) published=0
  while [ $SECONDS -lt $deadline ]; do
    sleep 0.2
    published=$(status "$port" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["publish"]["rows_published"])' 2>/dev/null) || published=0
    [ "$published" -ge "$((KEYS * 2))" ] && break
  done
  [ "$published" -ge "$((KEYS * 2))" ] || fail_with "publish $n: only $published of $((KEYS * 2)) changes published" "$WORK/publish.log"
  sleep 1 # one more confirmation round: JetStream holds them all
  local ports=() aps=() mark
  mark=$(cpu_mark)
  for ((p = 0; p < n; p++)); do
    ports+=($((port + 1 + p)))
    "$SLUICE" apply --from "$NATS/$stream" --partition "$p/$n" --source "$SRC" --target "$TGT" --config "$WORK/sluice.yaml" \
      --batch-rows 5000 --listen "127.0.0.1:${ports[p]}" >"$WORK/apply$p.log" 2>&1 & aps+=($!); PIDS+=($!)
  done
  deadline=$((SECONDS + 600)) s=0
  while [ $SECONDS -lt $deadline ]; do
    sleep 0.2
    s=$(my -N -D "$DB" -e "SELECT COALESCE(SUM(applied), 0) FROM _sluice_partitions" 2>/dev/null || echo 0)
    [ "$s" -ge "$((KEYS * 2))" ] && break
  done
  [ "$s" -ge "$((KEYS * 2))" ] || fail_with "apply $n: only $s of $((KEYS * 2)) changes applied" "$WORK"/apply*.log
  IDLE=$(cpu_idle "$mark")
  RATE=$(python3 - "${ports[@]}" <<'PY'
import datetime, json, sys, urllib.request
first, last, total = [], [], 0
for port in sys.argv[1:]:
    s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/api/v1/status" % port))
    total += s["applied_this_run"]
    t = lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    first.append(t(s["first_batch_at"])); last.append(t(s["last_applied_at"]))
print("%.0f" % (total / (max(last) - min(first)).total_seconds()))
PY
  ) || fail_with "apply $n: no rate" "$WORK"/apply*.log
  for p in "${aps[@]}"; do kill -TERM "$p"; done
  for p in "${aps[@]}"; do wait "$p" || fail_with "apply: an applier failed" "$WORK"/apply*.log; done
  kill -TERM "$pub"; wait "$pub" || fail_with "publisher failed" "$WORK/publish.log"
  pg postgres -Atc "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null
  pg "$DB" -c "DROP PUBLICATION IF EXISTS $SLOT"
  "$V1" drop-stream --events "$NATS/$stream"
  run_verify "apply$n"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
declare -a E P1 P3 R V I1 I3
all_equal=1
for ((i = 1; i <= RUNS; i++)); do
  events "$i"; E[i]=$RATE; v_e=$VERDICT
  if ((i % 2)); then
    partitioned "$i" 1; P1[i]=$RATE; v_1=$VERDICT; I1[i]=$IDLE
    partitioned "$i" 3; P3[i]=$RATE; v_3=$VERDICT; I3[i]=$IDLE
  else
    partitioned "$i" 3; P3[i]=$RATE; v_3=$VERDICT; I3[i]=$IDLE
    partitioned "$i" 1; P1[i]=$RATE; v_1=$VERDICT; I1[i]=$IDLE
  fi
  R[i]=$(calc "${P3[i]} / ${P1[i]}")
  V[i]="$v_e / $v_1 / $v_3"
  [ "${V[i]}" = "EQUAL / EQUAL / EQUAL" ] || all_equal=0
  printf '   round %d/%d: events %s/s | apply 1/1 %s/s (CPU idle %s%%) | apply ×3 %s/s (idle %s%%, %.2f×) | verify %s\n' "$i" "$RUNS" \
    "$(human_count "${E[i]}")" "$(human_count "${P1[i]}")" "${I1[i]}" "$(human_count "${P3[i]}")" "${I3[i]}" "${R[i]}" "${V[i]}"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

med_e=$(median "${E[@]}"); med_p1=$(median "${P1[@]}"); med_p3=$(median "${P3[@]}"); med_r=$(median "${R[@]}")
goal_e=$(awk -v r="$med_e" 'BEGIN { print (r >= 20000) ? 1 : 0 }')
goal_r=$(awk -v r="$med_r" 'BEGIN { print (r > 1.0) ? 1 : 0 }')
verdict() { if [ "$1" = 1 ]; then echo "**met**"; else echo "**not met**"; fi; }
machine_facts
nats_ver=$(nats-server --version 2>/dev/null | awk '{ print $2 }' || echo unknown)
cmd="make bench"
[ "$RUNS" = 3 ] || cmd="BENCH_RUNS=$RUNS $cmd"
[ "$EVENTS" = 600000 ] || cmd="BENCH_EVENTS=$EVENTS $cmd"

section() {
  cat <<EOF
<!-- bench:events:start -->
## Events and partitioned appliers: changes applied per second

Written by \`scripts/bench-events.sh\` (run by \`$cmd\`); rerun it to refresh this section.

- Date: $started
- Machine: $(nproc) CPUs ($cpu), $mem RAM; load average $load_before before, $load_after after
- PostgreSQL $pg_ver, MariaDB $my_ver, nats-server $nats_ver with JetStream (file storage), all on 127.0.0.1
- sluice commit $commit; batch commit on: \`--batch-rows 5000\`, \`--batch-delay 100ms\`
- Table: the demo's \`likes\` (user_id, post_id, created_at) mapped to V2 \`post_likes\` with two
  renamed columns and a computed column (\`liked_on\`, evaluated on PostgreSQL for every batch)

Per round, each measurement on fresh databases and a fresh stream:

- **events**: $(human_count "$EVENTS") upsert events over $(human_count "$KEYS") rows (each row twice, in version order)
  are put on the stream first; one \`sluice sync --changes=events\` applies them. Rate from its
  status: first batch received to last batch committed.
- **apply 1/1**, **apply ×3**: \`sluice sync --publish\` publishes $(human_count "$EVENTS") row changes (INSERT of
  $(human_count "$KEYS") rows, then an UPDATE of all) for 1 or 3 partitions; once JetStream holds them,
  1 or 3 \`sluice apply\` processes start together. Rate: total applied over the span from the first
  applier's first batch to the last applier's last commit.
- Each run ends with \`sluice verify\` (must be EQUAL).

| round | events, one applier (changes/s) | apply 1/1 (changes/s) | CPU idle, 1/1 | apply ×3 (changes/s) | CPU idle, ×3 | ×3 / 1/1 | verify (events / 1/1 / ×3) |
|---:|---:|---:|---:|---:|---:|---:|---|
EOF
  for ((i = 1; i <= RUNS; i++)); do
    printf '| %d | %s | %s | %s%% | %s | %s%% | %.2f | %s |\n' "$i" "$(human_count "${E[i]}")" "$(human_count "${P1[i]}")" \
      "${I1[i]}" "$(human_count "${P3[i]}")" "${I3[i]}" "${R[i]}" "${V[i]}"
  done
  printf '| **median** | **%s** | **%s** | | **%s** | | **%.2f** | |\n' "$(human_count "$(printf '%.0f' "$med_e")")" \
    "$(human_count "$(printf '%.0f' "$med_p1")")" "$(human_count "$(printf '%.0f' "$med_p3")")" "$med_r"
  cat <<EOF

| goal (from the issue) | measured | |
|---|---|---|
| one applier: 20,000 events/s or more | $(human_count "$(printf '%.0f' "$med_e")") events/s (median of $RUNS) | $(verdict "$goal_e") |
| three partitioned appliers faster than one | $(printf '%.2f' "$med_r")× (median of the per-round ratios) | $(verdict "$goal_r") |

All processes — PostgreSQL, MariaDB, nats-server, the publisher and the appliers — share
this machine's $(nproc) CPUs, and a batch is CPU work on all of them (decode, evaluation of
the computed column on PostgreSQL, the write and commit on MariaDB). The "CPU idle" columns
are for the whole machine, from the appliers' start (connecting, reading the schema) to the
last commit. One applier overlaps its decoding and source evaluation with its target writes;
when that leaves little idle CPU, three appliers can only share the same CPU time, and pay
for three filtered JetStream consumers and for inserts interleaved across the key range.
Partitioning pays off when an applier waits rather than computes (a target over the network,
more cores, appliers on other machines), which one $(nproc)-CPU machine cannot show. The
machine may also have been running other work (see the load averages).
<!-- bench:events:end -->
EOF
}

section >"$WORK/section.md"
[ -z "$DOC" ] || write_section events "$WORK/section.md" "$DOC"
echo
cat "$WORK/section.md"
echo
if [ -n "$DOC" ]; then say "bench-events: wrote $DOC"; else say "bench-events: dry run (BENCH_EVENTS=$EVENTS): docs/BENCHMARKS.md left alone; set BENCH_DOC to write a file"; fi
[ "$all_equal" = 1 ] || { say "bench-events: FAILED: verify did not report EQUAL in some run"; exit 1; }
