# Shared helpers for scripts/demo.sh and scripts/bench.sh. Source it; do not run it.
# Talks to the servers scripts/services.sh sets up:
#   PostgreSQL 127.0.0.1:5432 user postgres (trust), MariaDB 127.0.0.1:3306 root (no password).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE=${SLUICE:-$ROOT/bin/sluice}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
MY_HOST=${MY_HOST:-127.0.0.1}
MY_PORT=${MY_PORT:-3306}

say() { printf '%s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# pg DB ARGS...: psql against database DB, stop on the first error, quiet.
pg() { local db=$1; shift; psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$db" -X -q -v ON_ERROR_STOP=1 "$@"; }
# my ARGS...: the mariadb client as root.
my() { mariadb -uroot -h"$MY_HOST" -P"$MY_PORT" "$@"; }

pg_url() { printf 'postgres://postgres@%s:%s/%s?sslmode=disable' "$PG_HOST" "$PG_PORT" "$1"; }
my_url() { printf 'mysql://root@%s:%s/%s' "$MY_HOST" "$MY_PORT" "$1"; }
# pg_socket_dir / my_socket: where the servers listen on Unix sockets (empty when they don't).
pg_socket_dir() { pg postgres -Atc "SHOW unix_socket_directories" 2>/dev/null | cut -d, -f1 | tr -d ' '; }
my_socket() { my -Nse "SELECT @@socket" 2>/dev/null; }
# pg_socket_url DB / my_socket_url DB: the same databases over those sockets.
pg_socket_url() { printf 'postgres://postgres@/%s?host=%s&port=%s' "$1" "$(pg_socket_dir)" "$PG_PORT"; }
my_socket_url() { printf 'mysql://root@/%s?socket=%s' "$1" "$(my_socket)"; }

# pg_recreate_db NAME: drop (terminating other sessions) and create a PostgreSQL database.
pg_recreate_db() {
  pg postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" -c "CREATE DATABASE \"$1\""
}
# my_recreate_db NAME: drop and create a MariaDB database (utf8mb4).
my_recreate_db() {
  my -e "DROP DATABASE IF EXISTS \`$1\`; CREATE DATABASE \`$1\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
}

now() { date +%s.%N; }
# elapsed START: seconds since START (from now), 3 decimals.
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.3f", e - s }'; }
# calc EXPR: floating-point arithmetic via awk.
calc() { awk "BEGIN { printf \"%s\", $1 }" 2>/dev/null; }

# median V...: median of numbers.
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "n/a"; exit }
    if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# human_count N: 1000000 -> 1,000,000
human_count() { printf '%s' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|[,.]\)/\1,\2\3/' -e 'ta'; }

need_sluice() {
  [ -x "$SLUICE" ] || die "$SLUICE not found: run make build first"
}

# machine_facts: sets cpu, mem, pg_ver, my_ver and commit for a benchmark report.
machine_facts() {
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  [ -n "$cpu" ] || cpu=$(lscpu 2>/dev/null | awk -F': *' '/^Model name/ { print $2; exit }' || true)
  [ -n "$cpu" ] || cpu="CPU model unknown"
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  pg_ver=$(pg postgres -Atc "SHOW server_version")
  my_ver=$(my -N -e "SELECT VERSION()")
  commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit (working tree has uncommitted changes)"
  fi
}

# write_section NAME SECTION_FILE DOC: replace the part of DOC between
# <!-- bench:NAME:start --> and <!-- bench:NAME:end --> with SECTION_FILE (which
# carries the markers), or append it when DOC has no such part yet.
write_section() {
  local name=$1 sect=$2 doc=$3 tmp
  tmp=$(mktemp)
  mkdir -p "$(dirname "$doc")"
  if [ -f "$doc" ] && grep -q "^<!-- bench:$name:start -->" "$doc" && grep -q "^<!-- bench:$name:end -->" "$doc"; then
    awk -v sect="$sect" -v a="<!-- bench:$name:start -->" -v b="<!-- bench:$name:end -->" '
      $0 == a { while ((getline l < sect) > 0) print l; skip = 1; next }
      $0 == b { skip = 0; next }
      !skip { print }' "$doc" >"$tmp"
  else
    {
      if [ -f "$doc" ]; then cat "$doc"; echo; else
        printf '# Benchmarks\n\nEach section below is written by a script and delimited by\n'
        printf '`<!-- bench:NAME:start -->` / `<!-- bench:NAME:end -->` markers. A script replaces only\n'
        printf 'its own section, so add new benchmarks under their own heading and markers.\n\n'
      fi
      cat "$sect"
    } >"$tmp"
  fi
  mv "$tmp" "$doc"
}

# lag_hist API: the sync's apply-lag histogram now (compact JSON).
lag_hist() {
  curl -fsS "$1/api/v1/status" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["lag_histogram"], separators=(",", ":")))'
}
# lag_quantiles "BEFORE|AFTER"...: p50 and p99 (seconds) and the number of target
# commits, from the differences of pairs of lag_hist readings, interpolated within
# buckets as Prometheus's histogram_quantile does.
lag_quantiles() {
  python3 - "$@" <<'PY'
import json, sys
bounds, counts, n = None, None, 0
for pair in sys.argv[1:]:
    if "|" not in pair:
        continue
    a, b = (json.loads(x) for x in pair.split("|"))
    ca, cb = a.get("counts") or [0] * len(b.get("counts") or []), b.get("counts") or []
    if not cb:
        continue
    bounds = b["bounds"]
    d = [y - x for x, y in zip(ca, cb)]
    counts = d if counts is None else [x + y for x, y in zip(counts, d)]
    n += b["count"] - a.get("count", 0)
def q(p):
    if not counts or n == 0:
        return 0.0
    rank, lo, prev = p * n, 0.0, 0
    for bound, c in zip(bounds, counts):
        if c >= rank:
            return lo + (bound - lo) * (rank - prev) / max(c - prev, 1)
        lo, prev = bound, c
    return bounds[-1]  # beyond the last bucket: at least this
print("%.3f %.3f %d" % (q(0.5), q(0.99), n))
PY
}
