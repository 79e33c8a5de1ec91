#!/bin/sh
# Initialise the cluster on first start, then run the server in the
# foreground. The container holds no password: the app's role gets its
# password from the stack role through db-set-password.sh (docker exec), so a
# new password never restarts the server.
set -eu
bin=$(echo /usr/lib/postgresql/*/bin)
# The stack file names them (loginapp_db_user, loginapp_db_name).
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"
# Certificate and key in one PEM file (the stack's db_tls secret): the server speaks TLS only.
: "${POSTGRES_TLS_FILE:?the server certificate and key (PEM) are required}"
[ -r "$POSTGRES_TLS_FILE" ] || { echo "db: cannot read $POSTGRES_TLS_FILE" >&2; exit 1; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # The superuser gets a random password nobody keeps (it logs in only
    # through the socket); the app's role owns the app's database, is not a
    # superuser, and cannot log in until it is given a password.
    superuser_password=$(mktemp)
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$superuser_password"
    "$bin/initdb" --pgdata="$PGDATA" --username=postgres --auth=scram-sha-256 \
        --pwfile="$superuser_password" --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$superuser_password"
    "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE "$POSTGRES_USER" LOGIN;
SQL
    "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
fi

# Rewritten on every start, so clusters made by earlier versions get it too:
# the superuser logs in only through the socket, as the container's postgres
# user (docker exec: backups, restores, setting the app's password), never
# over the network. Over the network only the app's role reaches only its
# database, over TLS with its scram-sha-256 password, from the container's own
# networks (samenet: the overlay); anything else is rejected.
{
    echo "local all postgres peer"
    echo "local all all reject"
    echo "host all postgres all reject"
    echo "hostssl \"$POSTGRES_DB\" \"$POSTGRES_USER\" samenet scram-sha-256"
    echo "host all all all reject"
} > "$PGDATA/pg_hba.conf"

# The socket lives in the tmpfs /tmp (the root file system is read-only),
# open to the postgres user only.
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' \
    -c unix_socket_directories=/tmp -c unix_socket_permissions=0700 \
    -c password_encryption=scram-sha-256 \
    -c ssl=on -c ssl_cert_file="$POSTGRES_TLS_FILE" -c ssl_key_file="$POSTGRES_TLS_FILE" \
    -c ssl_min_protocol_version=TLSv1.2
