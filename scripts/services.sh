#!/usr/bin/env bash
# Ensures the servers sluice's demo and tests need are installed, configured and
# running on this machine. Idempotent: run it as often as you like.
#
# We reconfigure the machine's own servers on their standard ports (not private
# instances on other ports), because that is what a user's first try looks like:
#   PostgreSQL 15  127.0.0.1:5432  user postgres, trust auth, wal_level=logical
#   MariaDB        127.0.0.1:3306  root, empty password, ROW binlog, local_infile=ON
#   NATS           127.0.0.1:4222  JetStream on
# Needs root (apt-get, starting servers as their own users).
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

apt_updated=0
need_pkg() { # need_pkg BINARY PACKAGE...
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then
    if [ "$apt_updated" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=1; fi
    log "installing ${*:2}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${@:2}" >/dev/null
  fi
}

wait_for() { # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then return 1; fi
    sleep 0.5
  done
}

# ---------- Chromium (the dashboard's browser test, test/ops) ----------
need_pkg /usr/bin/chromium chromium

# ---------- PostgreSQL 15 ----------
need_pkg psql postgresql-15 postgresql-client-15
need_pkg /usr/lib/postgresql/15/bin/pgbench postgresql-15
PG_VER=15
pg_up() { psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; }
pg_start() {
  pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main start 2>/dev/null || true
  wait_for 60 pg_up || { log "PostgreSQL did not start; see /var/log/postgresql/"; exit 1; }
}
if ! pg_up; then log "starting PostgreSQL $PG_VER"; pg_start; fi
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc 'show wal_level')" != logical ] ||
   [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc 'show max_connections')" -lt 300 ]; then
  # logical decoding for sync; room for the test suite's parallel connections
  log "setting wal_level=logical, max_connections=300 and restarting PostgreSQL"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "ALTER SYSTEM SET wal_level = logical" \
    -c "ALTER SYSTEM SET max_replication_slots = 40" -c "ALTER SYSTEM SET max_wal_senders = 40" \
    -c "ALTER SYSTEM SET max_connections = 300"
  pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main restart
  wait_for 60 pg_up || { log "PostgreSQL did not come back"; exit 1; }
fi
# No standby here, so commits need not wait for one (synchronous_commit=local is
# what "on" does without a standby). test/sync's watermark-race test names a
# standby that never comes, to hold one transaction committed in the WAL but
# not yet visible; a crashed run of it must not leave that behind.
psql -h 127.0.0.1 -U postgres -d postgres -qc "ALTER SYSTEM SET synchronous_commit = local" \
  -c "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null

# A locale whose money format is not C's ("1.234,56 €"): test/sync checks that
# sluice reads money in the C locale whatever lc_monetary the source database has.
if ! locale -a 2>/dev/null | grep -qix 'de_DE\.utf-\?8'; then
  need_pkg localedef locales
  log "generating the de_DE.UTF-8 locale (lc_monetary test)"
  localedef -i de_DE -f UTF-8 de_DE.UTF-8
  # the server reads the system's locales when it starts
  pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main restart
  wait_for 60 pg_up || { log "PostgreSQL did not come back"; exit 1; }
fi

# ---------- MariaDB ----------
need_pkg /usr/sbin/mariadbd mariadb-server mariadb-client
MARIADB_ARGS=(--log-bin=mariadb-bin --binlog-format=ROW --binlog-row-image=FULL --server-id=1
  --local-infile=1 --max-allowed-packet=256M --innodb-buffer-pool-size=1G
  --innodb-log-file-size=512M --max-connections=500)
my_up() { mariadb -uroot -h127.0.0.1 -e 'select 1' >/dev/null 2>&1; }
my_var() { mariadb -uroot -h127.0.0.1 -N -e "select @@$1"; }
my_start() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- "${MARIADB_ARGS[@]}"
  wait_for 90 my_up || { log "MariaDB did not start; see /var/log/mysql/error.log"; exit 1; }
}
if ! my_up; then log "starting MariaDB with ROW binlog"; my_start; fi
if [ "$(my_var log_bin)" != 1 ] || [ "$(my_var binlog_format)" != ROW ] || [ "$(my_var local_infile)" != 1 ] ||
   [ "$(my_var max_connections)" -lt 500 ]; then
  log "restarting MariaDB with ROW binlog and local_infile"
  mariadb-admin -uroot -h127.0.0.1 shutdown
  wait_for 60 bash -c '! pgrep -x mariadbd'
  my_start
fi

# ---------- NATS with JetStream ----------
need_pkg nats-server nats-server
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  log "starting nats-server with JetStream"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for 30 bash -c '(exec 3<>/dev/tcp/127.0.0.1/4222)' || { log "nats-server did not start"; exit 1; }
fi

log "ready: PostgreSQL (wal_level=logical) :5432, MariaDB (binlog ROW) :3306, NATS JetStream :4222"
