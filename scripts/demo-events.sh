#!/usr/bin/env bash
# sluice events demo (make demo-events): the V1→V2 pattern.
#
# A tiny likes service, V1 (examples/likes-v1), keeps likes in PostgreSQL and emits an
# event to NATS JetStream after every like and unlike. sluice backfills the likes into
# a new schema on MariaDB, V2 (table post_likes: user_id renamed member_id, created_at
# renamed liked_at, a computed column liked_on), and applies the events while V1 keeps
# writing: both databases are written to at the same time. When V1 stops, sluice drains
# the events (sluice cutover) and sluice verify compares V1 and V2.
#
# Recreates the databases sluice_demo_events on both servers and the JetStream stream
# LIKES_DEMO every time. Exits non-zero if a step fails or verify does not say EQUAL.
#
# Environment: DEMO_SECONDS (how long V1 writes, default 20), DEMO_USERS (default 2000),
# DEMO_POSTS (default 100), DEMO_WORKERS (V1's concurrent clients, default 4),
# NATS_URL (default nats://127.0.0.1:4222).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec 2>&1

SECONDS_V1=${DEMO_SECONDS:-20}
USERS=${DEMO_USERS:-2000}
POSTS=${DEMO_POSTS:-100}
WORKERS=${DEMO_WORKERS:-4}
DB=sluice_demo_events
STREAM=LIKES_DEMO
EVENTS="${NATS_URL:-nats://127.0.0.1:4222}/$STREAM"
LISTEN=127.0.0.1:7391
export SLUICE_API_TOKEN=${SLUICE_API_TOKEN:-demo-events-$RANDOM$RANDOM}
need_sluice
SRC=$(pg_url "$DB")
TGT=$(my_url "$DB")
WORK=$(mktemp -d -t sluice-demo-events.XXXXXX)
V1="$ROOT/bin/likes-v1"
SYNC_PID="" V1_PID=""
cleanup() {
  [ -z "$V1_PID" ] || kill "$V1_PID" 2>/dev/null || true
  [ -z "$SYNC_PID" ] || kill "$SYNC_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { say "demo-events: $1 FAILED; last log lines:"; tail -n 25 "$WORK/sync.log" "$WORK/v1.log" 2>/dev/null >&2 || true; exit 1; }

api() { curl -sS -H "Authorization: Bearer $SLUICE_API_TOKEN" "$@"; }
status_field() { # status_field PY_EXPR: read GET /api/v1/status with a Python expression over s
  api "http://$LISTEN/api/v1/status" | python3 -c "import json, sys; s = json.load(sys.stdin); e = s['events']; print($1)"
}

say "== 1/6 V1: PostgreSQL database $DB, table likes; JetStream stream $STREAM"
(cd "$ROOT" && go build -o "$V1" ./examples/likes-v1) || fail "build likes-v1"
pg_recreate_db "$DB" >/dev/null
my_recreate_db "$DB"
"$V1" drop-stream --events "$EVENTS" || fail "reset the stream"
"$V1" seed --source "$SRC" --users "$USERS" --posts "$POSTS" || fail "seed V1"
say "   $(human_count "$(pg "$DB" -Atc 'SELECT count(*) FROM likes')") likes by $USERS users on $POSTS posts"

cat >"$WORK/sluice.yaml" <<'YAML'
# V2: the likes table of the new service, on MariaDB
tables:
  likes:
    rename: post_likes
    columns:
      user_id:    {rename: member_id}
      created_at: {rename: liked_at}
    computed:
      - name: liked_on              # the day of the like, for V2's daily counts
        expr: "(created_at AT TIME ZONE 'UTC')::date"
YAML
say "== 2/6 V2 mapping (sluice plan):"
"$SLUICE" plan --source "$SRC" --target "$TGT" --config "$WORK/sluice.yaml" 2>>"$WORK/sync.log" |
  sed -n '/^CREATE TABLE/,/;$/p; /WARNING.*\(renamed\|computed\)/p' | sed 's/^/   /' || fail "sluice plan"

say "== 3/6 V1 goes live: $WORKERS clients like and unlike for $SECONDS_V1 s, one event per change"
"$V1" serve --source "$SRC" --events "$EVENTS" --users "$USERS" --posts "$POSTS" --workers "$WORKERS" \
  --duration "${SECONDS_V1}s" >"$WORK/v1.log" 2>&1 &
V1_PID=$!
sleep 1

say "== 4/6 sluice sync --changes=events: backfill V2 and apply the events, while V1 writes"
"$SLUICE" sync --changes=events --events "$EVENTS" --source "$SRC" --target "$TGT" --config "$WORK/sluice.yaml" \
  --listen "$LISTEN" --chunk-rows 10000 >>"$WORK/sync.log" 2>&1 &
SYNC_PID=$!
t0=$(now)
while kill -0 "$V1_PID" 2>/dev/null; do
  sleep 2
  kill -0 "$SYNC_PID" 2>/dev/null || fail "sluice sync"
  line=$(status_field '"phase %-9s  V2 rows copied %7d  events applied %7d  ignored %5d  dead-lettered %d  pending %d" % (e["phase"], sum(t["rows_copied"] for t in e["tables"]), e["events_applied"], e["events_ignored"], e["events_dead_lettered"], e["pending"])' 2>/dev/null || true)
  v1=$(pg "$DB" -Atc 'SELECT count(*) FROM likes' 2>/dev/null || echo '?')
  say "   $(printf '%5.1f' "$(elapsed "$t0")") s  V1 likes $v1 | $line"
done
wait "$V1_PID" || fail "likes-v1 serve"
V1_PID=""
sed 's/^/   /' "$WORK/v1.log"

say "== 5/6 V1 stopped writing: sluice cutover waits until every event is applied"
api -X POST "http://$LISTEN/api/v1/cutover" >"$WORK/cutover.json" || fail "sluice cutover"
drain=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["drain_ms"])' "$WORK/cutover.json" 2>/dev/null) || { cat "$WORK/cutover.json"; fail "sluice cutover"; }
summary=$(status_field '"%d %d %d %d %.0f %d" % (e["events_applied"], e["events_ignored"], e["events_dead_lettered"], e["last_stream_seq"], e["events_per_second"], sum(t["rows_copied"] for t in e["tables"]))')
read -r applied ignored dead lastseq rate copied <<<"$summary"
kill -TERM "$SYNC_PID"; wait "$SYNC_PID" || fail "sluice sync stop"
SYNC_PID=""

say "== 6/6 sluice verify: V1 (PostgreSQL) against V2 (MariaDB), through the mapping"
verify_rc=0
verify_out=$("$SLUICE" verify --source "$SRC" --target "$TGT" --config "$WORK/sluice.yaml" 2>>"$WORK/sync.log") || verify_rc=$?
printf '%s\n' "$verify_out" | sed 's/^/   /'
verdict=$(printf '%s\n' "$verify_out" | sed -n 's/^verify: \([A-Z]*\).*/\1/p' | tail -n 1)
v1_rows=$(pg "$DB" -Atc 'SELECT count(*) FROM likes')
v2_rows=$(my -N -e "SELECT COUNT(*) FROM \`$DB\`.post_likes")
sample=$(my -N -e "SELECT CONCAT(member_id, ' ', post_id, ' ', liked_at, ' ', liked_on) FROM \`$DB\`.post_likes ORDER BY liked_at DESC LIMIT 1")
"$V1" drop-stream --events "$EVENTS" || true

printf '\n'
printf 'sluice events demo: V1 PostgreSQL %s.likes -> V2 MariaDB %s.post_likes, events via JetStream %s\n' "$DB" "$DB" "$STREAM"
printf '  V1 rows          %s\n' "$(human_count "$v1_rows")"
printf '  V2 rows          %s (%s copied by the backfill, the rest by events)\n' "$(human_count "$v2_rows")" "$(human_count "$copied")"
printf '  events           %s in the stream: %s applied, %s ignored as not newer, %s dead-lettered\n' \
  "$(human_count "$lastseq")" "$(human_count "$applied")" "$(human_count "$ignored")" "$dead"
printf '                   (ignored: V1 clients emit concurrently, so a change can arrive after a newer one)\n'
printf '  events / s       %s, as fast as V1 emitted them; all applied %s ms after V1 stopped\n' "$(human_count "$rate")" "$drain"
printf '  newest V2 row    %s  (member_id post_id liked_at liked_on)\n' "$sample"
printf '  verify           %s\n' "${verdict:-ERROR (exit $verify_rc)}"

[ "$verify_rc" = 0 ] && [ "$verdict" = EQUAL ] && [ "$v1_rows" = "$v2_rows" ] && [ "$dead" = 0 ] || {
  say "demo-events: FAILED (verify ${verdict:-exit $verify_rc}, rows $v1_rows vs $v2_rows, $dead dead letters)"
  exit 1
}
