//! `latchkey backup` and `latchkey restore`: the database and the key files in one archive, so
//! a restore cannot forget the keys (a database without its pepper and data key is a database
//! of passwords, PINs and secrets nobody can check or open).
//!
//! The archive is a tar file (mode 0600) holding `manifest.json`, every key file, and for SQLite
//! a consistent copy of the database (`VACUUM INTO`, taken while the server runs). A PostgreSQL
//! database is dumped with `pg_dump` beside it (docs/operations.md, "Backup and restore"); the
//! manifest records which.

use anyhow::Context;
use latchkey_core::crypto::sha256_b64;
use latchkey_server::config::Config;
use serde_json::json;
use std::io::Read;
use std::path::Path;

const MANIFEST: &str = "manifest.json";
const DATABASE: &str = "latchkey.db";
const FORMAT: u32 = 1;

/// Write the archive `out` for the server configured by `config`.
pub async fn backup(config: &Config, out: &Path) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    let open = latchkey_store::OpenOptions { existing_only: true, ..Default::default() };
    let db = latchkey_store::Database::open(&config.database_url(), &open).await?;
    // The files must be the ones this database was set up with: a backup of the wrong keys is
    // found out only on the day it is needed.
    latchkey_server::keys::load_checked_existing(dir, db.store().as_ref()).await?;
    let mut files: Vec<(String, Vec<u8>)> = vec![];
    for name in latchkey_server::keys::key_files(dir) {
        let bytes = std::fs::read(dir.join(name)).with_context(|| format!("cannot read {name}"))?;
        files.push((name.to_owned(), bytes));
    }
    if db.kind() == "sqlite" {
        // Into a directory only we can enter: the copy holds everything the database does.
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp_dir = parent.join(format!(".latchkey-backup-{}", uuid::Uuid::now_v7().simple()));
        latchkey_server::keys::create_data_dir(&tmp_dir)?;
        let tmp = tmp_dir.join(DATABASE);
        let snap = db.sqlite_snapshot(&tmp).await;
        let bytes = snap.map_err(anyhow::Error::from).and_then(|()| Ok(std::fs::read(&tmp)?));
        let _ = std::fs::remove_dir_all(&tmp_dir);
        files.push((DATABASE.to_owned(), bytes.context("cannot read the database snapshot")?));
    }
    db.close().await;
    let manifest = json!({
        "format": FORMAT,
        "created_at": latchkey_core::clock::rfc3339(time::OffsetDateTime::now_utc()),
        "version": env!("CARGO_PKG_VERSION"),
        "database": db.kind(),
        "files": files.iter().map(|(n, b)| json!({"name": n, "bytes": b.len(), "sha256": sha256_b64(b)})).collect::<Vec<_>>(),
    });
    let mut archive = Vec::new();
    {
        let mut tar = tar::Builder::new(&mut archive);
        let mut add = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            tar.append_data(&mut h, name, bytes)?;
            Ok(())
        };
        add(MANIFEST, &serde_json::to_vec_pretty(&manifest)?)?;
        for (name, bytes) in &files {
            add(name, bytes)?;
        }
        tar.finish()?;
    }
    latchkey_server::keys::write_private_file(out, &archive)
        .with_context(|| format!("cannot write the archive {} (it must not exist yet)", out.display()))?;
    eprintln!("latchkey: wrote {} ({} bytes): {}", out.display(), archive.len(), describe(&files));
    if db.kind() == "postgres" {
        eprintln!(
            "latchkey: the archive holds the keys only: dump the PostgreSQL database beside it with \
             `pg_dump --format=custom` (docs/operations.md, \"Backup and restore\")"
        );
    }
    Ok(())
}

fn describe(files: &[(String, Vec<u8>)]) -> String {
    files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
}

/// Unpack the archive `from` into the data directory `dir`, which must not hold Latchkey data.
pub async fn restore(from: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} is not empty: restore into a new data directory", dir.display());
    }
    let bytes = std::fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut entries: Vec<(String, Vec<u8>)> = vec![];
    let mut tar = tar::Archive::new(bytes.as_slice());
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        entries.push((name, data));
    }
    let manifest: serde_json::Value = entries
        .iter()
        .find(|(n, _)| n == MANIFEST)
        .map(|(_, b)| serde_json::from_slice(b))
        .transpose()?
        .context("not a Latchkey backup: no manifest.json")?;
    anyhow::ensure!(manifest["format"] == FORMAT, "unknown backup format {}", manifest["format"]);
    let listed = manifest["files"].as_array().context("manifest.json lists no files")?;
    let mut restore = vec![];
    for f in listed {
        let name = f["name"].as_str().unwrap_or_default();
        // Only the names a backup writes: never a path out of the data directory.
        anyhow::ensure!(
            name == DATABASE || latchkey_server::keys::is_key_file(name),
            "unexpected file {name:?} in the archive"
        );
        let (_, data) = entries.iter().find(|(n, _)| n == name).with_context(|| format!("{name} is missing"))?;
        anyhow::ensure!(
            f["sha256"].as_str() == Some(sha256_b64(data).as_str()),
            "{name} is damaged (its SHA-256 does not match the manifest)"
        );
        restore.push((name, data));
    }
    anyhow::ensure!(restore.iter().any(|(n, _)| *n == "pepper"), "the archive holds no keys");
    latchkey_server::keys::create_data_dir(dir)?;
    for (name, data) in &restore {
        latchkey_server::keys::write_private_file(&dir.join(name), data)?;
    }
    let database = manifest["database"].as_str().unwrap_or("sqlite");
    if database == "sqlite" {
        // The restored pair must open and agree, as the server will check at start.
        let config = Config { data_dir: dir.to_owned(), ..Default::default() };
        let open = latchkey_store::OpenOptions { existing_only: true, ..Default::default() };
        let db = latchkey_store::Database::open(&config.database_url(), &open).await?;
        latchkey_server::keys::load_checked_existing(dir, db.store().as_ref()).await?;
        db.close().await;
        eprintln!(
            "latchkey: restored {} into {} (taken {}); start it with `latchkey serve --data-dir {}`",
            from.display(),
            dir.display(),
            manifest["created_at"].as_str().unwrap_or("?"),
            dir.display()
        );
    } else {
        eprintln!(
            "latchkey: restored the keys into {}; restore the PostgreSQL dump taken with them \
             (`pg_restore`), then start with `latchkey serve --data-dir {} --database-url …`",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}
