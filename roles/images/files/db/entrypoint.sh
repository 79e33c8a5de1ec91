#!/bin/sh
# Initialise the cluster on first start (password from a file, scram-sha-256
# everywhere), then run the server in the foreground.
set -eu
bin=$(echo /usr/lib/postgresql/*/bin)
# The stack file names them (loginapp_db_user, loginapp_db_name).
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    "$bin/initdb" --pgdata="$PGDATA" --username=postgres --auth=scram-sha-256 \
        --pwfile="$POSTGRES_PASSWORD_FILE" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    password=$(sed "s/'/''/g" "$POSTGRES_PASSWORD_FILE")
    "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE "$POSTGRES_USER" LOGIN PASSWORD '$password';
SQL
    "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
    {
        echo "local all all scram-sha-256"
        echo "host all all 0.0.0.0/0 scram-sha-256"
    } > "$PGDATA/pg_hba.conf"
fi

exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' \
    -c unix_socket_directories='' -c password_encryption=scram-sha-256
