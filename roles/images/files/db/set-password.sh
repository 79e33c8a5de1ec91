#!/bin/sh
# Give the app's role (POSTGRES_USER) the password read from stdin, unless it
# has it already; prints "unchanged" or "changed". The stack role runs it with
# `docker exec -i` in the db container, as postgres: the superuser logs in
# through the server's socket and needs no password. A first deploy may run it
# while the server still starts: it waits up to DB_WAIT seconds.
set -eu
bin=$(echo /usr/lib/postgresql/*/bin)
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}" "${DB_SOCKET_DIR:=/tmp}" "${DB_WAIT:=60}"
password=$(cat)
[ -n "$password" ] || { echo "db-set-password: no password on stdin" >&2; exit 2; }

waited=0
until "$bin/pg_isready" -q -h "$DB_SOCKET_DIR" -d postgres; do
    if [ "$waited" -ge "$DB_WAIT" ]; then
        echo "db-set-password: the server did not accept connections within $DB_WAIT s" >&2
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done

# Checked the way the app logs in: over TCP, scram-sha-256.
if PGPASSWORD="$password" "$bin/psql" -X -q -w -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -c 'SELECT 1' >/dev/null 2>&1; then
    echo unchanged
    exit 0
fi
# psql quotes the values (:"name", :'literal'); the password comes from the
# environment, never from the command line.
DB_NEW_PASSWORD="$password" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$DB_SOCKET_DIR" -U postgres -d postgres \
    -v role="$POSTGRES_USER" <<'SQL'
\getenv password DB_NEW_PASSWORD
ALTER ROLE :"role" PASSWORD :'password';
SQL
echo changed
