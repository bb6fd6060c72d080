#!/usr/bin/env bash
# Restores a backup made by scripts/pg-backup.sh into an EMPTY PostgreSQL database, then
# runs Tessera's independent invariant checker on it. Refuses a damaged backup (checksum)
# and a target that already holds a Tessera schema. Nothing is half-restored: pg_restore
# runs in a single transaction.
#
#   TESSERA_BIN=/usr/local/bin/tessera scripts/pg-restore.sh BACKUP_DIR postgres://.../new_db
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 BACKUP_DIR TARGET_DATABASE_URL" >&2
  exit 2
fi
dir=$1
url=$2
bin=${TESSERA_BIN:-tessera}
for tool in pg_restore psql sha256sum; do
  command -v "$tool" >/dev/null || { echo "pg-restore: $tool is not installed" >&2; exit 2; }
done
[ -f "$dir/manifest.json" ] || { echo "pg-restore: not a Tessera backup: $dir/manifest.json is missing" >&2; exit 1; }
grep -q '"format": "tessera-pg-backup/1"' "$dir/manifest.json" || {
  echo "pg-restore: $dir/manifest.json is not a tessera-pg-backup/1 manifest" >&2
  exit 1
}
want=$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' "$dir/manifest.json")
[ -f "$dir/tessera.pgdump" ] || { echo "pg-restore: backup $dir is incomplete: tessera.pgdump is missing" >&2; exit 1; }
have=$(sha256sum "$dir/tessera.pgdump" | cut -d' ' -f1)
if [ "$have" != "$want" ]; then
  echo "pg-restore: backup $dir is corrupt: tessera.pgdump has SHA-256 $have, the manifest records $want" >&2
  exit 1
fi
existing=$(psql "$url" -XAtqc "SELECT to_regclass('tessera_migrations') IS NOT NULL")
if [ "$existing" = "t" ]; then
  echo "pg-restore: the target database already holds a Tessera schema; restore into an empty database" >&2
  exit 1
fi

started=$(date +%s%3N)
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction --dbname "$url" "$dir/tessera.pgdump"
ms=$(($(date +%s%3N) - started))
restored="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
# Event positions are transaction ids of the cluster that wrote them. In another cluster
# they could lie ahead of its own ids and stall the event relays until it caught up, so
# they are re-based: every restored event on transaction id 1 in its old order, each
# consumer's cursor on the same event as before.
psql "$url" -X -q -v ON_ERROR_STOP=1 <<'SQL'
BEGIN;
CREATE TEMP TABLE outbox_rank ON COMMIT DROP AS
  SELECT id, txid, seq, row_number() OVER (ORDER BY txid, seq) AS r FROM outbox;
UPDATE outbox_cursors c SET position = '1:' || COALESCE((SELECT max(k.r) FROM outbox_rank k
  WHERE (k.txid, k.seq) <= (split_part(c.position, ':', 1)::xid8, split_part(c.position, ':', 2)::bigint)), 0);
UPDATE outbox o SET txid = '1'::xid8, seq = k.r FROM outbox_rank k WHERE k.id = o.id;
SELECT setval(pg_get_serial_sequence('outbox', 'seq'), GREATEST((SELECT COALESCE(max(seq), 0) FROM outbox), 1));
COMMIT;
SQL
if ! "$bin" check --database-url "$url"; then
  echo "pg-restore: the restored database violates invariants (report above)" >&2
  exit 1
fi
echo "restored $dir into the target database in ${restored} s; invariant check passed"
