#!/usr/bin/env bash
# Makes sure MariaDB and Redis are installed and running on loopback, and that the database user the
# services and tests use exists. Idempotent; installs with apt-get only what is missing.
# Node.js with npm too: `make up` builds the web client (web/build.sh) with them. With --test it also makes
# sure of what the test suites need: Python 3 with venv (the python-socketio tests).
#   MariaDB: 127.0.0.1:3306, user chat/chat, owning database `chat` and every `chat_test_*` database.
#   Redis:   127.0.0.1:6379.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_for() { # description, command...
  local what=$1
  shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "deps: $what did not come up" >&2
  return 1
}

if ! command -v curl >/dev/null 2>&1; then apt_install curl ca-certificates; fi

# --- Redis -------------------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "deps: installing Redis"
  apt_install redis-server redis-tools
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "deps: starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly yes --appendfsync everysec \
    --dir /var/lib/redis --logfile /var/log/redis/chat-deps.log
  wait_for "Redis" redis-cli -h 127.0.0.1 -p 6379 ping
fi

# Acknowledged messages must survive a Redis restart: AOF on (best effort on a Redis we did not start).
redis-cli -h 127.0.0.1 -p 6379 config set appendonly yes >/dev/null 2>&1 || true

# --- MariaDB -----------------------------------------------------------------------------------------
MARIADBD=$(command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd 2>/dev/null || true)
if [ -z "$MARIADBD" ] || ! command -v mariadb >/dev/null 2>&1; then
  echo "deps: installing MariaDB"
  apt_install mariadb-server mariadb-client
  MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
fi
db_up() { mariadb-admin ping -h 127.0.0.1 -P 3306 --connect-timeout=2 2>/dev/null | grep -q alive || mariadb-admin ping 2>/dev/null | grep -q alive; }
if ! db_up; then
  echo "deps: starting MariaDB"
  if [ ! -d /var/lib/mysql/mysql ]; then
    $SUDO mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  $SUDO mkdir -p /run/mysqld
  $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
  $SUDO start-stop-daemon --start --oknodo --background --exec "$MARIADBD" -- --user=mysql
  wait_for "MariaDB" db_up
fi

# Administrative SQL: over the local socket as root (Debian's default), else root over TCP.
admin_sql() {
  $SUDO mariadb -uroot -e "$1" 2>/dev/null || mariadb -uroot -h 127.0.0.1 -P 3306 -e "$1"
}
if ! mariadb -uchat -pchat -h 127.0.0.1 -P 3306 -e "SELECT 1" chat >/dev/null 2>&1; then
  echo "deps: creating database user chat"
  admin_sql "
    CREATE DATABASE IF NOT EXISTS chat CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
    CREATE USER IF NOT EXISTS 'chat'@'localhost' IDENTIFIED BY 'chat';
    CREATE USER IF NOT EXISTS 'chat'@'127.0.0.1' IDENTIFIED BY 'chat';
    GRANT ALL PRIVILEGES ON chat.* TO 'chat'@'localhost';
    GRANT ALL PRIVILEGES ON chat.* TO 'chat'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON \`chat\\_test\\_%\`.* TO 'chat'@'localhost';
    GRANT ALL PRIVILEGES ON \`chat\\_test\\_%\`.* TO 'chat'@'127.0.0.1';
    FLUSH PRIVILEGES;"
fi

# --- Node.js (the web client's build; the socket.io-client and browser tests) ------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "deps: installing Node.js and npm"
  apt_install nodejs npm
fi

# --- Test tools (make test) -------------------------------------------------------------------------
if [ "${1:-}" = "--test" ]; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    echo "deps: installing Python 3 venv"
    apt_install python3 python3-venv
  fi
fi
