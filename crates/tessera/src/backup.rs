//! Backups of the embedded SQLite database.
//!
//! A backup is a directory `tessera-backup-<UTC time>` holding a consistent snapshot of
//! `tessera.db` (taken with SQLite's online backup API from a read transaction, so the
//! server keeps writing meanwhile), optionally encrypted, and `manifest.json` with the
//! time, schema version, sizes and SHA-256 of every file. It is written under a hidden
//! `.partial` name and renamed only when complete, so a directory with the backup name is
//! always whole.
//!
//! Verification restores the snapshot into a scratch directory, checks SQLite's own
//! integrity, the schema version and every invariant of the independent checker: a backup
//! is good only once it has been restored. Restore does the same into the data directory
//! and swaps the files in only after everything passed, keeping the previous ones.

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MANIFEST: &str = "manifest.json";
pub const DB_FILE: &str = "tessera.db";
pub const ENCRYPTED_DB_FILE: &str = "tessera.db.enc";
pub const NAME_PREFIX: &str = "tessera-backup-";
const FORMAT: &str = "tessera-backup/1";
const ENCRYPTION: &str = "AES-256-GCM STREAM (BE32), 1 MiB chunks";
/// Leads an encrypted file; with the nonce prefix it is authenticated with every chunk,
/// so a file from another format or another backup cannot be spliced in.
const MAGIC: &[u8; 8] = b"TSRBAK01";
const NONCE_PREFIX_LEN: usize = 7;
const CHUNK: usize = 1 << 20;
const TAG_LEN: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub created_at: String,
    /// Seconds since the Unix epoch, for retention and the age metric.
    pub created_unix: i64,
    pub tessera_version: String,
    pub engine: String,
    pub schema_version: i64,
    /// `None` when the snapshot is stored in the clear.
    pub encryption: Option<String>,
    /// Size and SHA-256 of the database itself (after decryption).
    pub database_bytes: u64,
    pub database_sha256: String,
    /// The files as stored in the backup directory.
    pub files: Vec<FileEntry>,
}

pub type Key = [u8; 32];

/// Reads a 256-bit key: 32 raw bytes, or 64 hex digits (surrounding whitespace allowed).
pub fn load_key(path: &Path) -> Result<Key> {
    let raw = fs::read(path).with_context(|| format!("cannot read the backup key file {}", path.display()))?;
    if let Ok(key) = Key::try_from(raw.as_slice()) {
        return Ok(key);
    }
    if let Some(key) = std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .and_then(|b| Key::try_from(b.as_slice()).ok())
    {
        return Ok(key);
    }
    bail!(
        "the backup key file {} must hold 32 bytes, raw or as 64 hex digits (make one with: head -c 32 /dev/urandom > {})",
        path.display(),
        path.display()
    )
}

/// Holds the data directory for one process. `serve` keeps it for its whole life, and
/// restore refuses to replace the files under a running server.
pub struct DataDirLock {
    _file: File,
}

pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = dir.join("tessera.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "the data directory {} is in use by a running Tessera server (it holds {}); stop it first",
            dir.display(),
            path.display()
        ),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2026-11-22T05:01:02.123Z` -> `20261122T050102Z`: sortable and safe in file names.
fn compact_time(stored: &str) -> String {
    let seconds = stored.split('.').next().unwrap_or(stored);
    let mut s: String = seconds.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    s.push('Z');
    s
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Fills `buf` up to `limit` bytes or the end of input; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    buf.clear();
    r.take(limit as u64).read_to_end(buf)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// Copies every page of `src_db` into a new file `dest` inside one read transaction.
fn snapshot(src_db: &Path, dest: &Path) -> Result<i64> {
    if !src_db.is_file() {
        bail!("there is no database at {}", src_db.display());
    }
    use rusqlite::OpenFlags;
    let src = rusqlite::Connection::open_with_flags(src_db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("cannot open {}", src_db.display()))?;
    src.busy_timeout(Duration::from_secs(30))?;
    let mut dst = rusqlite::Connection::open(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).context("cannot start the SQLite backup")?;
        loop {
            // -1: every page in one step, so the copy is one consistent read transaction.
            match backup.step(-1).context("SQLite backup step failed")? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    // A self-contained file: the copy must not depend on a -wal next to it.
    dst.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))
        .context("cannot switch the snapshot to a rollback journal")?;
    let version: i64 = dst
        .query_row("SELECT COALESCE(MAX(version), 0) FROM tessera_migrations", [], |r| r.get(0))
        .context("the database has no schema version table: is it a Tessera database?")?;
    dst.close().map_err(|(_, e)| e).context("cannot close the snapshot")?;
    Ok(version)
}

fn encrypt_file(plain: &Path, out: &Path, key: &Key) -> Result<(FileEntry, u64, String)> {
    let mut input = HashingReader {
        inner: BufReader::with_capacity(CHUNK, File::open(plain)?),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut output = HashingWriter {
        inner: BufWriter::with_capacity(
            CHUNK,
            File::create(out).with_context(|| format!("cannot create {}", out.display()))?,
        ),
        hash: Sha256::new(),
        bytes: 0,
    };
    let prefix: [u8; NONCE_PREFIX_LEN] = rand::random();
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&prefix);
    output.write_all(&header)?;
    let cipher = Aes256Gcm::new(key.into());
    let mut enc = EncryptorBE32::from_aead(cipher, prefix.as_ref().into());
    let (mut cur, mut next) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
    // One chunk of look-ahead: the last chunk is sealed differently, so truncating the
    // file at a chunk boundary cannot go unnoticed.
    read_up_to(&mut input, &mut cur, CHUNK)?;
    loop {
        read_up_to(&mut input, &mut next, CHUNK)?;
        if next.is_empty() {
            break;
        }
        let sealed = enc
            .encrypt_next(Payload { msg: &cur, aad: &header })
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        output.write_all(&sealed)?;
        std::mem::swap(&mut cur, &mut next);
    }
    let sealed = enc
        .encrypt_last(Payload { msg: &cur, aad: &header })
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    output.write_all(&sealed)?;
    output.flush()?;
    output.inner.get_ref().sync_all()?;
    let entry = FileEntry {
        name: ENCRYPTED_DB_FILE.into(),
        bytes: output.bytes,
        sha256: hex::encode(output.hash.finalize()),
    };
    Ok((entry, input.bytes, hex::encode(input.hash.finalize())))
}

fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut r = HashingReader {
        inner: BufReader::with_capacity(CHUNK, File::open(path).with_context(|| format!("cannot read {}", path.display()))?),
        hash: Sha256::new(),
        bytes: 0,
    };
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok((r.bytes, hex::encode(r.hash.finalize())))
}

/// Takes a backup of the database in `data_dir` into a new directory under `root`.
pub fn create(data_dir: &Path, root: &Path, key: Option<&Key>) -> Result<(PathBuf, Manifest)> {
    fs::create_dir_all(root).with_context(|| format!("cannot create the backup directory {}", root.display()))?;
    let created_at = tessera_domain::time::now_string();
    let created_unix = now_unix();
    let mut name = format!("{NAME_PREFIX}{}", compact_time(&created_at));
    let mut n = 1;
    while root.join(&name).exists() {
        n += 1;
        name = format!("{NAME_PREFIX}{}-{n}", compact_time(&created_at));
    }
    let partial = root.join(format!(".{name}.partial"));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    sweep_stale(root, data_dir);
    // The clear snapshot of an encrypted backup is taken beside the database it copies
    // (the same trust), so no clear copy ever lands where backups are kept or shipped.
    let plain = match key {
        Some(_) => data_dir.join(format!(".{name}.snapshot")),
        None => partial.join(DB_FILE),
    };
    let result = (|| {
        let schema_version = snapshot(&data_dir.join(DB_FILE), &plain)?;
        let (files, database_bytes, database_sha256) = match key {
            Some(key) => {
                let (entry, bytes, sha) = encrypt_file(&plain, &partial.join(ENCRYPTED_DB_FILE), key)?;
                fs::remove_file(&plain)?;
                (vec![entry], bytes, sha)
            }
            None => {
                let (bytes, sha) = hash_file(&plain)?;
                let entry = FileEntry {
                    name: DB_FILE.into(),
                    bytes,
                    sha256: sha.clone(),
                };
                (vec![entry], bytes, sha)
            }
        };
        let manifest = Manifest {
            format: FORMAT.into(),
            created_at: created_at.clone(),
            created_unix,
            tessera_version: env!("CARGO_PKG_VERSION").into(),
            engine: "sqlite".into(),
            schema_version,
            encryption: key.map(|_| ENCRYPTION.to_string()),
            database_bytes,
            database_sha256,
            files,
        };
        let mut f = File::create(partial.join(MANIFEST))?;
        f.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())?;
        f.sync_all()?;
        sync_dir(&partial)?;
        let done = root.join(&name);
        fs::rename(&partial, &done).with_context(|| format!("cannot move the finished backup to {}", done.display()))?;
        sync_dir(root)?;
        Ok((done, manifest))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_file(&plain);
    }
    result
}

/// Leftovers of backups that a crash interrupted (a `.partial` directory, a clear
/// snapshot) older than a day: nothing writes them any more.
fn sweep_stale(root: &Path, data_dir: &Path) {
    let day = Duration::from_secs(86_400);
    for (dir, suffix) in [(root, ".partial"), (data_dir, ".snapshot")] {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if name.starts_with(&format!(".{NAME_PREFIX}")) && name.ends_with(suffix) && old {
                let _ = fs::remove_dir_all(e.path());
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).with_context(|| format!("not a Tessera backup: cannot read {}", path.display()))?;
    let m: Manifest =
        serde_json::from_str(&text).with_context(|| format!("not a Tessera backup: {} is not a valid manifest", path.display()))?;
    if m.format != FORMAT {
        bail!(
            "unsupported backup format '{}' in {} (this binary reads {FORMAT})",
            m.format,
            path.display()
        );
    }
    if m.engine != "sqlite" {
        bail!(
            "backup {} is of engine '{}'; this command restores SQLite backups",
            dir.display(),
            m.engine
        );
    }
    Ok(m)
}

fn corrupt(dir: &Path, entry: &FileEntry, bytes: u64, sha: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "backup {} is corrupt: {} has {bytes} bytes and SHA-256 {sha}, the manifest records {} bytes and SHA-256 {}",
        dir.display(),
        entry.name,
        entry.bytes,
        entry.sha256
    )
}

/// Restores the backup's database into `dest` (a new file), checking every checksum.
fn extract(dir: &Path, m: &Manifest, key: Option<&Key>, dest: &Path) -> Result<()> {
    let [entry] = m.files.as_slice() else {
        bail!(
            "backup {} lists {} files; expected exactly one database file",
            dir.display(),
            m.files.len()
        );
    };
    let src = dir.join(&entry.name);
    let file = File::open(&src).with_context(|| format!("backup {} is incomplete: cannot read {}", dir.display(), entry.name))?;
    let mut input = HashingReader {
        inner: BufReader::with_capacity(CHUNK, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let out = File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut output = HashingWriter {
        inner: BufWriter::with_capacity(CHUNK, out),
        hash: Sha256::new(),
        bytes: 0,
    };
    match (&m.encryption, entry.name.as_str()) {
        (None, DB_FILE) => {
            std::io::copy(&mut input, &mut output)?;
        }
        (Some(_), ENCRYPTED_DB_FILE) => {
            let Some(key) = key else {
                bail!("backup {} is encrypted: pass the key with --backup-key-file", dir.display());
            };
            let mut header = vec![0u8; MAGIC.len() + NONCE_PREFIX_LEN];
            if input.read_exact(&mut header).is_err() || &header[..MAGIC.len()] != MAGIC {
                std::io::copy(&mut input, &mut std::io::sink())?;
                return Err(corrupt(dir, entry, input.bytes, &hex::encode(input.hash.finalize())));
            }
            let cipher = Aes256Gcm::new(key.into());
            let mut dec = DecryptorBE32::from_aead(cipher, header[MAGIC.len()..].into());
            let (mut cur, mut next) = (Vec::with_capacity(CHUNK + TAG_LEN), Vec::with_capacity(CHUNK + TAG_LEN));
            read_up_to(&mut input, &mut cur, CHUNK + TAG_LEN)?;
            let mut failed = false;
            loop {
                read_up_to(&mut input, &mut next, CHUNK + TAG_LEN)?;
                if next.is_empty() {
                    break;
                }
                match dec.decrypt_next(Payload { msg: &cur, aad: &header }) {
                    Ok(plain) => output.write_all(&plain)?,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
                std::mem::swap(&mut cur, &mut next);
            }
            if !failed {
                match dec.decrypt_last(Payload { msg: &cur, aad: &header }) {
                    Ok(plain) => output.write_all(&plain)?,
                    Err(_) => failed = true,
                }
            }
            if failed {
                // Tell a damaged file from a wrong key: the checksum decides.
                std::io::copy(&mut input, &mut std::io::sink())?;
                let sha = hex::encode(input.hash.finalize());
                if input.bytes != entry.bytes || sha != entry.sha256 {
                    return Err(corrupt(dir, entry, input.bytes, &sha));
                }
                bail!(
                    "cannot decrypt backup {}: the key does not match the one it was encrypted with",
                    dir.display()
                );
            }
        }
        (enc, name) => bail!(
            "backup {} is inconsistent: file {name} with encryption {}",
            dir.display(),
            enc.as_deref().unwrap_or("none")
        ),
    }
    output.flush()?;
    output.inner.get_ref().sync_all()?;
    let sha = hex::encode(input.hash.finalize());
    if input.bytes != entry.bytes || sha != entry.sha256 {
        return Err(corrupt(dir, entry, input.bytes, &sha));
    }
    let db_sha = hex::encode(output.hash.finalize());
    if output.bytes != m.database_bytes || db_sha != m.database_sha256 {
        bail!(
            "backup {} is corrupt: the restored database has SHA-256 {db_sha}, the manifest records {}",
            dir.display(),
            m.database_sha256
        );
    }
    Ok(())
}

/// What a verified restore found.
pub struct Verified {
    pub manifest: Manifest,
    pub report: tessera_check::Report,
}

/// Restores the backup into `scratch/tessera.db` and checks it: checksums, SQLite's
/// integrity check, the schema version this binary can serve, and every invariant.
pub fn restore_and_check(dir: &Path, key: Option<&Key>, scratch: &Path) -> Result<Verified> {
    let manifest = read_manifest(dir)?;
    if manifest.schema_version > tessera_store::migrations::SCHEMA_VERSION {
        bail!(
            "backup {} has schema version {}, newer than this binary's {}: restore it with a newer tessera",
            dir.display(),
            manifest.schema_version,
            tessera_store::migrations::SCHEMA_VERSION
        );
    }
    fs::create_dir_all(scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    let db = scratch.join(DB_FILE);
    extract(dir, &manifest, key, &db)?;
    {
        let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open the restored database {}", db.display()))?;
        let problems: Vec<String> = c
            .prepare("PRAGMA quick_check")
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
            .context("SQLite's integrity check could not run on the restored database")?;
        if problems != ["ok"] {
            bail!(
                "backup {}: the restored database fails SQLite's integrity check: {}",
                dir.display(),
                problems.join("; ")
            );
        }
        let version: i64 = c
            .query_row("SELECT COALESCE(MAX(version), 0) FROM tessera_migrations", [], |r| r.get(0))
            .context("the restored database has no schema version table")?;
        if version != manifest.schema_version {
            bail!(
                "backup {}: the restored database is at schema version {version}, the manifest says {}",
                dir.display(),
                manifest.schema_version
            );
        }
    }
    let report =
        tessera_check::check_sqlite(&db).map_err(|e| anyhow::anyhow!("the invariant checker could not read the restored database: {e}"))?;
    if !report.is_ok() {
        bail!(
            "backup {}: the restored database violates invariants:\n{}",
            dir.display(),
            report.to_text()
        );
    }
    Ok(Verified { manifest, report })
}

/// `tessera backup verify`: restores into a temporary directory, checks, and cleans up.
pub fn verify(dir: &Path, key: Option<&Key>) -> Result<Verified> {
    let scratch = std::env::temp_dir().join(format!(".tessera-verify-{:016x}", rand::random::<u64>()));
    let result = restore_and_check(dir, key, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    result
}

pub struct Restored {
    pub manifest: Manifest,
    /// Where the files that were replaced now are, if there were any.
    pub previous: Option<PathBuf>,
}

/// `tessera restore`: replaces the database in `data_dir` with a verified copy of the
/// backup. Refuses while a server holds the directory; the files it replaces are moved to
/// `pre-restore-<time>` inside the data directory, never deleted.
pub fn restore(dir: &Path, data_dir: &Path, key: Option<&Key>) -> Result<Restored> {
    let _lock = lock_data_dir(data_dir)?;
    let stamp = compact_time(&tessera_domain::time::now_string());
    let scratch = data_dir.join(format!(".restore-{stamp}"));
    let verified = match restore_and_check(dir, key, &scratch) {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    let db = data_dir.join(DB_FILE);
    let previous = db.exists().then(|| data_dir.join(format!("pre-restore-{stamp}")));
    // Every step leaves a whole database at `tessera.db`, so a crash anywhere in here
    // leaves either the old one or the new one, never none and never a mix: the old
    // database is first made self-contained (its WAL folded in), then kept by a hard
    // link, and the restored file replaces it with one atomic rename.
    let swap = (|| -> Result<()> {
        if let Some(prev) = &previous {
            let c = rusqlite::Connection::open(&db).context("cannot open the current database")?;
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .context("cannot fold the current database's WAL into it")?;
            c.pragma_update(None, "journal_mode", "DELETE")
                .context("cannot take the current database out of WAL mode")?;
            c.close().map_err(|(_, e)| e).context("cannot close the current database")?;
            fs::create_dir_all(prev)?;
            fs::hard_link(&db, prev.join(DB_FILE))
                .or_else(|_| fs::copy(&db, prev.join(DB_FILE)).map(|_| ()))
                .context("cannot keep the current database aside")?;
            sync_dir(prev)?;
        }
        // Nothing of the old WAL may sit beside the new file.
        for f in ["tessera.db-wal", "tessera.db-shm"] {
            let p = data_dir.join(f);
            if p.exists() {
                fs::remove_file(&p).with_context(|| format!("cannot remove {f}"))?;
            }
        }
        fs::rename(scratch.join(DB_FILE), &db).context("cannot move the restored database into place")?;
        sync_dir(data_dir)
    })();
    if let Err(e) = swap {
        let _ = fs::remove_dir_all(&scratch);
        return Err(e.context("restore failed; the current database is unchanged"));
    }
    let _ = fs::remove_dir_all(&scratch);
    Ok(Restored {
        manifest: verified.manifest,
        previous,
    })
}

/// The complete backups under `root`, newest first.
pub fn list(root: &Path) -> Vec<(PathBuf, Manifest)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, Manifest)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(NAME_PREFIX)))
        .filter_map(|p| read_manifest(&p).ok().map(|m| (p, m)))
        .collect();
    found.sort_by(|a, b| b.1.created_unix.cmp(&a.1.created_unix).then_with(|| b.0.cmp(&a.0)));
    found
}

/// Which backups a retention policy keeps, given their times newest first: the newest
/// `hourly`, plus the newest of each of the `daily` most recent UTC days. The newest
/// backup is always kept.
pub fn retained(times_newest_first: &[i64], hourly: usize, daily: usize) -> Vec<bool> {
    let mut keep = vec![false; times_newest_first.len()];
    for k in keep.iter_mut().take(hourly.max(1)) {
        *k = true;
    }
    let mut days = Vec::new();
    for (i, t) in times_newest_first.iter().enumerate() {
        let day = t.div_euclid(86_400);
        if days.len() >= daily {
            break;
        }
        if !days.contains(&day) {
            days.push(day);
            keep[i] = true;
        }
    }
    keep
}

/// Deletes the backups under `root` that the policy no longer keeps; returns them.
pub fn prune(root: &Path, hourly: usize, daily: usize) -> Result<Vec<PathBuf>> {
    let found = list(root);
    let times: Vec<i64> = found.iter().map(|(_, m)| m.created_unix).collect();
    let keep = retained(&times, hourly, daily);
    let mut removed = Vec::new();
    for ((path, _), keep) in found.into_iter().zip(keep) {
        if !keep {
            fs::remove_dir_all(&path).with_context(|| format!("cannot delete old backup {}", path.display()))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Copies a finished backup into a second directory (another disk or a mounted remote),
/// checking the copy against the manifest before it gets its final name.
pub fn copy_to(backup: &Path, other_root: &Path) -> Result<PathBuf> {
    let m = read_manifest(backup)?;
    let name = backup
        .file_name()
        .context("a backup directory has a name")?
        .to_string_lossy()
        .to_string();
    fs::create_dir_all(other_root).with_context(|| format!("cannot create {}", other_root.display()))?;
    let partial = other_root.join(format!(".{name}.partial"));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    let result = (|| {
        for entry in &m.files {
            fs::copy(backup.join(&entry.name), partial.join(&entry.name)).with_context(|| format!("cannot copy {}", entry.name))?;
            let (bytes, sha) = hash_file(&partial.join(&entry.name))?;
            if bytes != entry.bytes || sha != entry.sha256 {
                return Err(corrupt(&partial, entry, bytes, &sha));
            }
            File::open(partial.join(&entry.name))?.sync_all()?;
        }
        fs::copy(backup.join(MANIFEST), partial.join(MANIFEST))?;
        File::open(partial.join(MANIFEST))?.sync_all()?;
        sync_dir(&partial)?;
        let done = other_root.join(&name);
        fs::rename(&partial, &done)?;
        sync_dir(other_root)?;
        Ok(done)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&partial);
    }
    result
}

/// How long an upload command may run before it is stopped.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Runs the operator's upload command (`sh -c`) for a finished backup. Its output goes to
/// the error only, so secrets it prints never reach the logs on success.
pub fn upload(command: &str, backup: &Path) -> Result<()> {
    let name = backup.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("TESSERA_BACKUP_PATH", backup)
        .env("TESSERA_BACKUP_NAME", &name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the backup upload command")?;
    // Drained as it comes, keeping the end: a chatty tool must not block on a full pipe.
    let stderr = child.stderr.take();
    let tail = std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        if let Some(mut e) = stderr {
            let mut buf = [0u8; 8192];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 4096 {
                    kept.drain(..kept.len() - 4096);
                }
            }
        }
        kept
    });
    let deadline = std::time::Instant::now() + UPLOAD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the backup upload command ran over {} s and was stopped", UPLOAD_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = tail.join().unwrap_or_default();
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        let last: String = err.chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("the backup upload command failed ({status}): {}", last.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const D: i64 = 86_400;

    #[test]
    fn retention_keeps_the_newest_hours_and_one_per_day() {
        // Hourly backups over 10 days, newest first.
        let now = 100 * D;
        let times: Vec<i64> = (0..240).map(|i| now - i * H).collect();
        let keep = retained(&times, 24, 7);
        let kept: Vec<i64> = times.iter().zip(&keep).filter(|(_, k)| **k).map(|(t, _)| *t).collect();
        // 24 newest, then the newest of each of the 7 most recent days; the two newest
        // days' picks are among the 24 already.
        assert!(kept[..24].iter().zip(&times[..24]).all(|(a, b)| a == b));
        let days: std::collections::BTreeSet<i64> = kept.iter().map(|t| t.div_euclid(D)).collect();
        assert_eq!(days.len(), 7, "{kept:?}");
        assert!(kept.len() <= 24 + 7);
        assert!(keep[0], "the newest is always kept");
    }

    #[test]
    fn retention_of_nothing_and_of_zero_policies() {
        assert!(retained(&[], 24, 7).is_empty());
        assert_eq!(retained(&[10, 5, 1], 0, 0), vec![true, false, false]);
    }

    #[test]
    fn compact_time_is_file_name_safe() {
        assert_eq!(compact_time("2026-11-22T05:01:02.123Z"), "20261122T050102Z");
    }

    #[test]
    fn keys_load_raw_or_hex_and_refuse_anything_else() {
        let dir = std::env::temp_dir().join(format!("tessera-key-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&dir).expect("dir");
        let raw = dir.join("raw");
        fs::write(&raw, [7u8; 32]).expect("write");
        assert_eq!(load_key(&raw).expect("raw key"), [7u8; 32]);
        let hexed = dir.join("hex");
        fs::write(&hexed, format!("{}\n", hex::encode([9u8; 32]))).expect("write");
        assert_eq!(load_key(&hexed).expect("hex key"), [9u8; 32]);
        let short = dir.join("short");
        fs::write(&short, b"too short").expect("write");
        let err = load_key(&short).expect_err("short key").to_string();
        assert!(err.contains("32 bytes"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// Encrypts and decrypts files around chunk boundaries, and detects tampering in any
    /// chunk (including dropping the last one).
    #[test]
    fn encryption_round_trips_and_detects_damage() {
        let dir = std::env::temp_dir().join(format!("tessera-enc-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&dir).expect("dir");
        let key = [3u8; 32];
        for size in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 5] {
            let plain = dir.join("plain");
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            fs::write(&plain, &data).expect("write");
            let enc = dir.join(ENCRYPTED_DB_FILE);
            let (entry, bytes, sha) = encrypt_file(&plain, &enc, &key).expect("encrypt");
            assert_eq!(bytes as usize, size);
            let m = Manifest {
                format: FORMAT.into(),
                created_at: String::new(),
                created_unix: 0,
                tessera_version: String::new(),
                engine: "sqlite".into(),
                schema_version: 1,
                encryption: Some(ENCRYPTION.into()),
                database_bytes: bytes,
                database_sha256: sha,
                files: vec![entry.clone()],
            };
            let out = dir.join("out");
            extract(&dir, &m, Some(&key), &out).expect("decrypt");
            assert_eq!(fs::read(&out).expect("read"), data, "size {size}");
            let wrong = extract(&dir, &m, Some(&[4u8; 32]), &out).expect_err("wrong key").to_string();
            assert!(wrong.contains("key does not match"), "{wrong}");
            // Flip one byte: the checksum names the damaged file.
            let mut sealed = fs::read(&enc).expect("read");
            let at = sealed.len() / 2;
            sealed[at] ^= 1;
            fs::write(&enc, &sealed).expect("write");
            let err = extract(&dir, &m, Some(&key), &out).expect_err("tampered").to_string();
            assert!(err.contains("is corrupt") && err.contains(ENCRYPTED_DB_FILE), "{err}");
            // A truncated file whose manifest was forged to match still fails to decrypt.
            sealed[at] ^= 1;
            if size > CHUNK {
                sealed.truncate(MAGIC.len() + NONCE_PREFIX_LEN + CHUNK + TAG_LEN);
                fs::write(&enc, &sealed).expect("write");
                let mut forged = m.clone();
                forged.files[0].bytes = sealed.len() as u64;
                forged.files[0].sha256 = hex::encode(Sha256::digest(&sealed));
                assert!(extract(&dir, &forged, Some(&key), &out).is_err(), "truncation at a chunk boundary");
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
