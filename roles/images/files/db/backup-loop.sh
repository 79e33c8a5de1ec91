#!/bin/sh
# The stack's backup service: every BACKUP_INTERVAL seconds a pg_dump -Fc of
# the app's database (PGHOST, PGUSER, PGDATABASE) into BACKUP_DIR. A dump
# counts only once pg_restore --list reads it back; it gets a .sha256 beside
# it, and the newest BACKUP_KEEP dumps are kept. A failed dump is retried
# after BACKUP_RETRY seconds (the database may still be starting).
set -eu
: "${BACKUP_DIR:=/backups}" "${BACKUP_INTERVAL:=86400}" "${BACKUP_KEEP:=7}" "${BACKUP_RETRY:=30}"
: "${BACKUP_PREFIX:=loginapp}" "${DB_PASSWORD_FILE:=/run/secrets/db_password}"
umask 077
# The password reaches libpq through a file in tmpfs, never the environment.
PGPASSFILE="${TMPDIR:-/tmp}/pgpass"
export PGPASSFILE
# DB_PASSWORD_FILE holds one password a line (a rotation lists the old and the
# new): a dump tries each until the server accepts one.
dump() {
    while IFS= read -r password || [ -n "$password" ]; do
        [ -n "$password" ] || continue
        printf '*:*:*:*:%s\n' "$(printf '%s' "$password" | sed 's/[\\:]/\\&/g')" > "$PGPASSFILE"
        pg_dump -Fc --no-password -f "$1" && return 0
    done < "$DB_PASSWORD_FILE"
    return 1
}
# A dump cut short by a kill is never kept.
rm -f "$BACKUP_DIR"/.partial-*
# PID 1 gets no default signal handling. A stop from Swarm (the image's
# STOPSIGNAL is SIGINT) is taken at once while sleeping, and else between
# steps, so it never leaves a partial dump or more than BACKUP_KEEP dumps.
stopping='' partial=''
trap 'stopping=1' INT TERM
stop_if_asked() {
    [ -z "$stopping" ] && return 0
    rm -f "$partial"
    exit 0
}
pause() {
    stop_if_asked
    sleep "$1" &
    wait $! || kill $! 2>/dev/null || :
    stop_if_asked
}

while :; do
    name="$BACKUP_PREFIX-$(date -u +%Y%m%dT%H%M%SZ).dump"
    partial="$BACKUP_DIR/.partial-$name"
    if dump "$partial" && stop_if_asked && pg_restore --list "$partial" >/dev/null; then
        mv "$partial" "$BACKUP_DIR/$name"
        (cd "$BACKUP_DIR" && sha256sum "$name" > "$name.sha256")
        echo "backup: $name, $(wc -c < "$BACKUP_DIR/$name") bytes, read back"
        # Names sort by time: keep the newest BACKUP_KEEP.
        ls -1 "$BACKUP_DIR" | grep -E "^$BACKUP_PREFIX-[0-9]{8}T[0-9]{6}Z\.dump\$" | sort -r \
            | tail -n +"$((BACKUP_KEEP + 1))" | while read -r old; do
                rm -f "$BACKUP_DIR/$old" "$BACKUP_DIR/$old.sha256"
                echo "backup: removed $old (keeping $BACKUP_KEEP)"
            done
        pause "$BACKUP_INTERVAL"
    else
        rm -f "$partial"
        echo "backup: $name failed; trying again in $BACKUP_RETRY s" >&2
        pause "$BACKUP_RETRY"
    fi
done
