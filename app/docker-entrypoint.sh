#!/bin/sh
# Bring the schema to head (under a PostgreSQL advisory lock, so replicas that
# start together take turns), then replace this shell with gunicorn so it gets
# the signals directly.
set -eu

if [ "${LOGINAPP_SKIP_MIGRATIONS:-0}" != "1" ]; then
    loginapp-migrate
fi

if [ "$#" -eq 0 ]; then
    set -- gunicorn --config /srv/loginapp/gunicorn.conf.py "loginapp:create_app()"
fi
exec "$@"
