#!/usr/bin/env bash
# sluice demo (make demo): the live story. Builds a realistic 1,000,000-row application
# log table in PostgreSQL; while a workload keeps inserting, updating and deleting rows,
# sluice syncs the table to MariaDB (copy merged with the change stream), cuts over with a
# measured write pause, and verify compares both sides. Prints a short report: rows, copy
# time, changes applied during the copy, lag, write pause and the verify verdict.
# Recreates the databases sluice_demo on both servers every time, so it can be run again.
# Exits non-zero if any step fails or verify finds differences.
#
# Environment: DEMO_ROWS (default 1000000), DEMO_DB (default sluice_demo),
# DEMO_TPS (workload transactions per second, default 200), DEMO_PORT (API port, 7071).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec 2>&1 # progress and report in one stream, in order (sluice's logs go to a temp file)

ROWS=${DEMO_ROWS:-1000000}
DB=${DEMO_DB:-sluice_demo}
case $ROWS in '' | *[!0-9]*) die "DEMO_ROWS must be a whole number" ;; esac
need_sluice
SRC=$(pg_url "$DB")
TGT=$(my_url "$DB")
LOG=$(mktemp -t sluice-demo.XXXXXX.log)

# step NAME CMD...: run CMD with its stderr going to the log; on failure show
# the tail of the log and stop.
step() {
  local name=$1; shift
  local rc=0
  "$@" 2>>"$LOG" || rc=$?
  if [ $rc != 0 ]; then
    say "demo: $name FAILED (exit $rc); last log lines:"
    tail -n 25 "$LOG" >&2
    exit $rc
  fi
}

say "== 1/5 source: PostgreSQL database $DB, table app_log ($(human_count "$ROWS") rows)"
t0=$(now)
step "recreate databases" pg_recreate_db "$DB"
step "recreate databases" my_recreate_db "$DB"
step "create app_log" pg "$DB" -v rows="$ROWS" <<'SQL'
CREATE TYPE log_level AS ENUM ('debug', 'info', 'warn', 'error');
CREATE TABLE app_log (
  id         bigserial   PRIMARY KEY,
  created_at timestamptz NOT NULL,
  user_id    bigint      NOT NULL,
  level      log_level   NOT NULL,
  message    text        NOT NULL,
  payload    jsonb
);
-- Deterministic (no random()) so every run builds the same rows: 30 days of
-- logs, 50,000 users, mostly info, Korean/emoji/ASCII messages, JSON payloads
-- (every 50th row has none).
INSERT INTO app_log (created_at, user_id, level, message, payload)
SELECT timestamptz '2024-03-01 00:00:00+00'
         + (g * 2.592) * interval '1 second' + (g % 997) * interval '1 microsecond',
       1 + (g::bigint * 7919) % 50000,
       (CASE WHEN g % 100 < 10 THEN 'debug' WHEN g % 100 < 82 THEN 'info'
             WHEN g % 100 < 96 THEN 'warn' ELSE 'error' END)::log_level,
       (ARRAY['로그인 성공 ✅',
              'payment failed 💳❌',
              'user 좋아요 clicked 👍',
              'GET /api/v1/orders 200',
              '세션 만료: 다시 로그인하세요 🔒',
              'cache miss for key "user:profile"',
              '주문 완료 🎉 order placed',
              'slow query (> 500 ms) on orders',
              'email queued 📧',
              'upload ok: 사진.jpg 🖼️'])[1 + (g * 31) % 10]
         || CASE WHEN g % 7 = 0 THEN ' #' || g ELSE '' END,
       CASE WHEN g % 50 = 0 THEN NULL ELSE
         jsonb_build_object(
           'ip',   '10.' || (g % 256) || '.' || ((g / 256) % 256) || '.' || ((g * 7) % 254 + 1),
           'ms',   round(((g * 37) % 50000) / 10.0, 1),
           'path', (ARRAY['/api/v1/login', '/api/v1/orders', '/api/v1/pay', '/검색', '/api/v1/likes'])[1 + g % 5],
           'ok',   g % 25 <> 0)
       END
FROM generate_series(1, :rows) AS g;
CREATE INDEX app_log_user_created_idx ON app_log (user_id, created_at);
ANALYZE app_log;
SQL
src_rows=$(pg "$DB" -Atc "SELECT count(*) FROM app_log")
src_size=$(pg "$DB" -Atc "SELECT pg_size_pretty(pg_total_relation_size('app_log'))")
say "   $(human_count "$src_rows") rows, $src_size with indexes, built in $(elapsed "$t0") s"
say "   sample:"
pg "$DB" -Atc "SELECT format('   %s | %s | %s | %s | %s', id, user_id, level, message, coalesce(payload::text, 'NULL'))
               FROM app_log WHERE id IN (1, 2, 3, 50) ORDER BY id" >&2

TPS=${DEMO_TPS:-200}
PORT=${DEMO_PORT:-7071}
API="http://127.0.0.1:$PORT"
TOKEN=demo-$(date +%s%N)
export SLUICE_API_TOKEN=$TOKEN
SLOT="sluice_demo_$$"
WORK=$(mktemp -d -t sluice-demo.XXXXXX)
SYNC_PID=""; LOAD_PID=""
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
  [ -n "$SYNC_PID" ] && kill "$SYNC_PID" 2>/dev/null && wait "$SYNC_PID" 2>/dev/null
  # never leave a replication slot behind, whatever happened
  "$SLUICE" abort --source "$SRC" --target "$TGT" --slot "$SLOT" --api "$API" >/dev/null 2>>"$LOG" || true
  rm -rf "$WORK" "$LOG"
}
trap cleanup EXIT

# status FIELD...: read fields of the running sync's status (JSON) with python3.
status() {
  curl -fsS "$API/api/v1/status" 2>/dev/null | python3 -c '
import json, sys
raw = sys.stdin.read()
if not raw.strip():
    sys.exit(1)  # the sync is not answering (yet)
st = json.loads(raw)
print(" ".join(str(st.get(f, "")) for f in sys.argv[1:]))' "$@"
}

say "== 2/5 sluice plan"
plan_out=$(step "sluice plan" "$SLUICE" plan --source "$SRC" --target "$TGT")
printf '%s\n' "$plan_out" | sed -n '/^CREATE TABLE/,/;$/p; /^-- WARNING/p; /after the data/,/;$/p' | sed 's/^/   /' >&2

say "== 3/5 live sync: workload of $TPS transactions/s (insert + update + delete) while sluice copies and streams"
cat >"$WORK/workload.sql" <<'SQL'
\set id random(1, 1000000)
BEGIN;
INSERT INTO app_log (created_at, user_id, level, message, payload)
  VALUES (now(), :id % 50000 + 1, 'info', '실시간 로그 ✨ live', '{"live": true}');
UPDATE app_log SET level = 'warn', message = message || ' (수정됨)' WHERE id = :id;
DELETE FROM app_log WHERE id = :id + 7;
END;
SQL
pgbench -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 4 -j 2 -R "$TPS" -T 600 -f "$WORK/workload.sql" "$DB" >"$WORK/pgbench.out" 2>&1 &
LOAD_PID=$!
t0=$(now)
"$SLUICE" sync --source "$SRC" --target "$TGT" --slot "$SLOT" --listen "127.0.0.1:$PORT" >"$WORK/sync.out" 2>>"$LOG" &
SYNC_PID=$!
copy_secs=""; copy_changes=0
while :; do
  kill -0 "$SYNC_PID" 2>/dev/null || { say "demo: sluice sync exited early"; tail -n 25 "$LOG" >&2; exit 1; }
  read -r phase changes lag <<<"$(status phase changes_applied lag_seconds || echo "starting 0 0")"
  if [ "$phase" = streaming ] && [ -z "$copy_secs" ]; then
    copy_secs=$(elapsed "$t0"); copy_changes=$changes
    say "   copy done in $copy_secs s; $copy_changes changes applied while copying; streaming"
    break
  fi
  sleep 1
done
# The lag of pure streaming under load: the target commits of 10 s, from 2 s
# after the copy finished (the first batches then carry what waited for the
# last chunk and the index build; the cutover line below counts the whole run).
# With 500 ms batches that is about 20 commits.
sleep 2
hist_copied=$(lag_hist "$API")
sleep 10
read -r lag_p50 lag_p99 _ <<<"$(lag_quantiles "$hist_copied|$(lag_hist "$API")")"
lag_p50=$(calc "$lag_p50 * 1000"); lag_p99=$(calc "$lag_p99 * 1000")
say "   streaming: lag p50 $(printf '%.0f' "$lag_p50") ms, p99 $(printf '%.0f' "$lag_p99") ms"

say "== 4/5 sluice cutover (the workload is still writing)"
cut_out=$(step "sluice cutover" "$SLUICE" cutover --api "$API")
printf '%s\n' "$cut_out" | sed 's/^/   /' >&2
pause_ms=$(printf '%s\n' "$cut_out" | sed -n 's/.*write pause \([0-9.]*\) ms.*/\1/p')
kill "$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=""
# the sync keeps streaming after the cutover: wait for the last writes
for _ in $(seq 1 60); do
  read -r lagb <<<"$(status lag_bytes)"
  [ "$lagb" = 0 ] && break
  sleep 0.5
done
read -r total_changes <<<"$(status changes_applied)"

say "== 5/5 sluice verify, then sluice finish"
t0=$(now)
verify_rc=0
verify_out=$("$SLUICE" verify --source "$SRC" --target "$TGT" 2>>"$LOG") || verify_rc=$?
verify_secs=$(elapsed "$t0")
printf '%s\n' "$verify_out" | sed 's/^/   /' >&2
verdict=$(printf '%s\n' "$verify_out" | sed -n 's/^verify: \([A-Z]*\).*/\1/p' | tail -n 1)
case $verify_rc in
  0) [ "$verdict" = EQUAL ] || verdict="${verdict:-?} (exit 0 but no EQUAL verdict)" ;;
  1) verdict="DIFFERENT" ;;
  *) verdict="ERROR (exit $verify_rc)"; tail -n 25 "$LOG" >&2 ;;
esac
step "sluice finish" "$SLUICE" finish --source "$SRC" --target "$TGT" --slot "$SLOT" --api "$API" >/dev/null
wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=""
src_rows=$(pg "$DB" -Atc "SELECT count(*) FROM app_log")
tgt_rows=$(my -N -e "SELECT COUNT(*) FROM \`$DB\`.app_log")
slots=$(pg postgres -Atc "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'")

rate=$(calc "$src_rows / ($copy_secs > 0 ? $copy_secs : 0.001)")
printf '\n'
printf 'sluice demo: PostgreSQL %s.app_log -> MariaDB %s.app_log, live\n' "$DB" "$DB"
printf '  rows             %s in PostgreSQL, %s in MariaDB\n' "$(human_count "$src_rows")" "$(human_count "$tgt_rows")"
printf '  copy time        %s s under a %s tx/s workload (%s rows/s)\n' "$copy_secs" "$TPS" "$(human_count "$(printf '%.0f' "$rate")")"
printf '  changes applied  %s during the copy, %s in all\n' "$(human_count "$copy_changes")" "$(human_count "$total_changes")"
printf '  lag              p50 %.0f ms, p99 %.0f ms while streaming (source commit to target commit)\n' "$lag_p50" "$lag_p99"
printf '  write pause      %s ms at cutover\n' "${pause_ms:-?}"
printf '  verify           %s (%s s)\n' "$verdict" "$verify_secs"
printf '  slot left        %s\n' "$([ "$slots" = 0 ] && echo none || echo "YES ($SLOT)")"

[ "$verify_rc" = 0 ] && [ "$verdict" = EQUAL ] && [ "$src_rows" = "$tgt_rows" ] && [ "$slots" = 0 ] || {
  say "demo: FAILED (verify $verdict, rows $src_rows vs $tgt_rows, slots left $slots)"
  exit 1
}
