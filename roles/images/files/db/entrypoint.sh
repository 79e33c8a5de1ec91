#!/bin/sh
# Initialise the cluster on first start (password from a file, scram-sha-256
# everywhere), then run the server in the foreground.
set -eu
bin=$(echo /usr/lib/postgresql/*/bin)
# The stack file names them (loginapp_db_user, loginapp_db_name).
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # The superuser gets a random password nobody keeps; the app's role owns
    # the app's database and is not a superuser.
    superuser_password=$(mktemp)
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$superuser_password"
    "$bin/initdb" --pgdata="$PGDATA" --username=postgres --auth=scram-sha-256 \
        --pwfile="$superuser_password" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$superuser_password"
    password=$(sed "s/'/''/g" "$POSTGRES_PASSWORD_FILE")
    "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE "$POSTGRES_USER" LOGIN PASSWORD '$password';
SQL
    "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
fi

# Rewritten on every start, so clusters made by earlier versions (whose
# superuser had the app's password) get it too: the superuser never logs in
# over the network; every other role needs its scram-sha-256 password. The
# overlay network is IPv4 only, and no line admits IPv6.
{
    echo "host all postgres 0.0.0.0/0 reject"
    echo "host all all 0.0.0.0/0 scram-sha-256"
} > "$PGDATA/pg_hba.conf"

exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' \
    -c unix_socket_directories='' -c password_encryption=scram-sha-256
