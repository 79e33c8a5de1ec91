#!/bin/sh
# Replace this shell with gunicorn so it gets the signals directly. Gunicorn's
# master brings the schema to head before it listens (gunicorn.conf.py's
# on_starting): it waits up to LOGINAPP_DATABASE_WAIT seconds for the database
# (replicas of a first deploy start before PostgreSQL accepts connections) and
# migrates under a PostgreSQL advisory lock, so replicas that start together
# take turns. Other commands (`docker run IMAGE flask --app loginapp db
# current`) run as given, without migrating first.
set -eu

if [ "$#" -eq 0 ]; then
    set -- gunicorn --config /srv/loginapp/gunicorn.conf.py "loginapp:create_app()"
fi
exec "$@"
