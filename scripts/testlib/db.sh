# Sourced by the test and bench scripts: the test servers' addresses, and MYSQL, the mysql client
# command (an array) for CHAT_TEST_DATABASE_URL (mysql://user:pass@host[:port], default the `chat`
# user of scripts/deps.sh on 127.0.0.1:3306). A URL it cannot read ends the script with status 1.
DB_BASE=${CHAT_TEST_DATABASE_URL:-mysql://chat:chat@127.0.0.1:3306}
REDIS_URL=${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}
if [[ $DB_BASE =~ ^mysql://([^:@/]+):([^@/]*)@([^:/]+):?([0-9]*)/?$ ]]; then
  MYSQL=(mysql "-u${BASH_REMATCH[1]}" "-p${BASH_REMATCH[2]}" "-h${BASH_REMATCH[3]}" "-P${BASH_REMATCH[4]:-3306}")
else
  echo "${0##*/}: cannot read CHAT_TEST_DATABASE_URL=$DB_BASE" >&2
  exit 1
fi
