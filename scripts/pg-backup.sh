#!/usr/bin/env bash
# Logical backup of a Tessera PostgreSQL database with pg_dump, safe under write load
# (pg_dump reads one consistent snapshot). Writes <out-root>/tessera-pg-backup-<UTC time>/
# with the dump and a manifest of sizes and SHA-256 checksums; the directory appears only
# when complete.
#
#   scripts/pg-backup.sh postgres://user@host:5432/db /var/backups/tessera
#
# Point-in-time recovery (pg_basebackup + WAL archiving) is described in
# docs/OPERATIONS.md; this script is the logical copy that scripts/pg-restore.sh restores.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 DATABASE_URL OUT_ROOT" >&2
  exit 2
fi
url=$1
root=$2
for tool in pg_dump psql sha256sum; do
  command -v "$tool" >/dev/null || { echo "pg-backup: $tool is not installed" >&2; exit 2; }
done

mkdir -p "$root"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
name="tessera-pg-backup-$stamp"
n=1
while [ -e "$root/$name" ]; do n=$((n + 1)); name="tessera-pg-backup-$stamp-$n"; done
partial="$root/.$name.partial"
rm -rf "$partial"
mkdir -p "$partial"
trap 'rm -rf "$partial"' EXIT

started=$(date +%s%3N)
schema_version=$(psql "$url" -XAtqc "SELECT COALESCE(MAX(version), 0) FROM tessera_migrations") || {
  echo "pg-backup: cannot read the schema version: is $url a Tessera database?" >&2
  exit 1
}
# Custom format: compressed, and pg_restore can restore it in one transaction.
pg_dump --format=custom --no-owner --no-privileges --file "$partial/tessera.pgdump" "$url"
bytes=$(stat -c %s "$partial/tessera.pgdump")
sha=$(sha256sum "$partial/tessera.pgdump" | cut -d' ' -f1)
cat > "$partial/manifest.json" <<JSON
{
  "format": "tessera-pg-backup/1",
  "created_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "engine": "postgres",
  "schema_version": $schema_version,
  "pg_dump_version": "$(pg_dump --version | sed 's/"//g')",
  "files": [{"name": "tessera.pgdump", "bytes": $bytes, "sha256": "$sha"}]
}
JSON
sync "$partial/tessera.pgdump" "$partial/manifest.json"
mv "$partial" "$root/$name"
trap - EXIT
sync "$root"
ms=$(($(date +%s%3N) - started))
elapsed="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
echo "backup $root/$name taken in ${elapsed} s: $bytes bytes, schema version $schema_version"
