#!/usr/bin/env bash
# Manual check (not part of `make test`): does scripts/deps.sh turn a bare Debian 12 into a machine that
# runs the stack and its tests? Builds a minimal Debian in a chroot, runs `deps.sh --test` there, checks
# Redis, MariaDB (the chat user can create chat_test_* databases), Node, npm, Python venv and curl, then a
# second run (must do nothing) and a restart of stopped servers.
#
# The chroot shares the network, so this STOPS the host's Redis and MariaDB on 6379/3306 for the duration
# and starts them again at the end with the commands this machine kind documents. Run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${FRESH_ROOT:-/tmp/chat-fresh-debian}
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
[ -x "$D/bin/bash" ] || debootstrap --variant=minbase --include=ca-certificates bookworm "$D" http://deb.debian.org/debian
mkdir -p "$D/root/chat/scripts" && cp scripts/deps.sh "$D/root/chat/scripts/"
cp /etc/resolv.conf "$D/etc/resolv.conf"
mount -t proc proc "$D/proc"; mount --bind /dev "$D/dev"; mount --bind /dev/pts "$D/dev/pts"
restore() {
  chroot "$D" bash -c 'redis-cli -h 127.0.0.1 shutdown nosave; mariadb-admin shutdown' >/dev/null 2>&1 || true
  sleep 2
  umount "$D/dev/pts" "$D/dev" "$D/proc" 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis \
    --logfile /var/log/redis/ci.log
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}
trap restore EXIT
redis-cli shutdown nosave >/dev/null 2>&1 || true
mariadb-admin -uroot shutdown >/dev/null 2>&1 || true
sleep 2
chroot "$D" bash -c 'cd /root/chat && bash scripts/deps.sh --test'
chroot "$D" bash -c 'set -e; redis-cli -h 127.0.0.1 ping
  mariadb -uchat -pchat -h127.0.0.1 chat -e "CREATE DATABASE chat_test_probe; DROP DATABASE chat_test_probe"
  node --version; npm --version; python3 -c "import venv, ensurepip"; curl --version >/dev/null'
echo "second run (prints nothing):"
chroot "$D" bash -c 'cd /root/chat && bash scripts/deps.sh --test'
chroot "$D" bash -c 'redis-cli -h 127.0.0.1 shutdown nosave; mariadb-admin shutdown; sleep 2
  cd /root/chat && bash scripts/deps.sh && redis-cli -h 127.0.0.1 ping && mariadb -uchat -pchat -h127.0.0.1 -e "SELECT 1" chat'
echo "fresh-machine deps: ok"
