#!/usr/bin/env bash
# sluice demo (make demo): builds a realistic 1,000,000-row application log table in
# PostgreSQL, then runs sluice plan, copy and verify into MariaDB and prints a short
# report. Recreates the databases sluice_demo on both servers every time, so it can
# be run again and again. Exits non-zero if any step fails or verify finds differences.
#
# Environment: DEMO_ROWS (default 1000000), DEMO_DB (default sluice_demo).
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
trap 'rm -f "$LOG"' EXIT

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

say "== 1/4 source: PostgreSQL database $DB, table app_log ($(human_count "$ROWS") rows)"
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

say "== 2/4 sluice plan"
plan_out=$(step "sluice plan" "$SLUICE" plan --source "$SRC" --target "$TGT")
printf '%s\n' "$plan_out" | sed -n '/^CREATE TABLE/,/;$/p; /^-- WARNING/p; /after the data/,/;$/p' | sed 's/^/   /' >&2

say "== 3/4 sluice copy"
t0=$(now)
copy_out=$(step "sluice copy" "$SLUICE" copy --source "$SRC" --target "$TGT")
copy_secs=$(elapsed "$t0")
printf '%s\n' "$copy_out" | sed 's/^/   /' >&2
tgt_rows=$(my -N -e "SELECT COUNT(*) FROM \`$DB\`.app_log")

say "== 4/4 sluice verify"
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

rate=$(calc "$tgt_rows / ($copy_secs > 0 ? $copy_secs : 0.001)")
printf '\n'
printf 'sluice demo: PostgreSQL %s.app_log -> MariaDB %s.app_log\n' "$DB" "$DB"
printf '  rows          %s in PostgreSQL, %s in MariaDB\n' "$(human_count "$src_rows")" "$(human_count "$tgt_rows")"
printf '  copy time     %s s (wall clock, including index build)\n' "$copy_secs"
printf '  copy rate     %s rows/s\n' "$(human_count "$(printf '%.0f' "$rate")")"
printf '  verify time   %s s\n' "$verify_secs"
printf '  verify        %s\n' "$verdict"

[ "$verify_rc" = 0 ] && [ "$verdict" = EQUAL ] && [ "$src_rows" = "$tgt_rows" ] || {
  say "demo: FAILED (verify $verdict, rows $src_rows vs $tgt_rows)"
  exit 1
}
