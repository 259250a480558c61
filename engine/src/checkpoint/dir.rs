//! The directory store: one file per snapshot.
//!
//! Layout: `<root>/<job>/task-<task>/<checkpoint:020>-<incarnation:016x>.snap`,
//! each file an [`envelope`](super::envelope). The checkpoint number is
//! zero-padded so that names sort by checkpoint; two incarnations that
//! wrote the same checkpoint number keep a file each.
//!
//! A write goes to a temporary file in the same directory, named after the
//! id (`.<checkpoint:020>-<incarnation:016x>.snap.tmp`, hidden and without
//! the `.snap` suffix, so no read or collect ever takes it for a snapshot),
//! is written whole and synced (`sync_all`), renamed over the final name,
//! and the directory is synced (on Unix) so the rename itself is durable.
//! A crash at any point leaves the old state (no file, or the previous file
//! of the same id) or the complete new file; a temporary file left by a
//! crash is removed by a later [`DirStore`] collect.
//!
//! What this store assumes of the file system: `rename` within a directory
//! is atomic, and `fsync` of a file and of its directory make them durable
//! (POSIX; true of ext4, XFS, APFS; not of every network file system).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::envelope::{self, check_id, check_job, check_task};
use super::{CheckpointStore, SnapshotId};
use crate::error::{Error, Result};
use crate::transport::ProducerRecord;

const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".snap.tmp";

/// Snapshots as files under one root directory (see the module doc).
#[derive(Clone, Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store under `root`, created (with the job and task directories)
    /// by the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds snapshot `id`; `Error::Invalid` for an id no
    /// store accepts (see [`envelope::check_id`]).
    pub fn snapshot_path(&self, id: &SnapshotId) -> Result<PathBuf> {
        check_id(id)?;
        Ok(self.task_dir(&id.job, id.task).join(snapshot_file_name(id)))
    }

    fn task_dir(&self, job: &str, task: i32) -> PathBuf {
        self.root.join(job).join(format!("task-{task}"))
    }

    fn write_file(&self, id: &SnapshotId, payload: &[u8]) -> Result<()> {
        let path = self.snapshot_path(id)?;
        let dir = self.task_dir(&id.job, id.task);
        create_dirs(&dir)?;
        let temporary = dir.join(format!(".{}{TEMPORARY_SUFFIX}", file_stem(id)));
        let sealed = envelope::seal(id, payload);
        if let Err(error) = write_synced(&temporary, &sealed) {
            // Best effort: a later collect removes it otherwise.
            let _ = fs::remove_file(&temporary);
            return Err(error);
        }
        if let Err(error) = fs::rename(&temporary, &path) {
            let _ = fs::remove_file(&temporary);
            return Err(io_error("rename into place", &path, &error));
        }
        sync_dir(&dir)
    }

    fn read_file(&self, id: &SnapshotId) -> Result<Vec<u8>> {
        let path = self.snapshot_path(id)?;
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingSnapshot(format!(
                    "{id}: no file {}",
                    path.display()
                )));
            }
            Err(error) => return Err(io_error("open", &path, &error)),
        };
        let mut sealed = Vec::new();
        file.read_to_end(&mut sealed)
            .map_err(|error| io_error("read", &path, &error))?;
        envelope::open(id, &sealed).map_err(|error| match error {
            Error::CorruptSnapshot(why) => {
                Error::CorruptSnapshot(format!("{} ({why})", path.display()))
            }
            other => other,
        })
    }

    /// Removes the task's snapshot files below `below` and its temporary
    /// files below `below`: a write at or above it may still be going on (a
    /// newer owner's), one below it never becomes of use. Other files are
    /// left alone. Returns how many snapshot files it removed.
    fn collect_files(&self, job: &str, task: i32, below: u64) -> Result<usize> {
        check_job(job)?;
        check_task(task)?;
        let dir = self.task_dir(job, task);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(io_error("list", &dir, &error)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| io_error("list", &dir, &error))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        let mut snapshots_removed = 0;
        let mut removed_any = false;
        for name in names {
            let Some((checkpoint, temporary)) = parse_file_name(&name) else {
                continue;
            };
            if checkpoint >= below {
                continue;
            }
            let path = dir.join(&name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                // Removed meanwhile by another collect: gone either way.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error("remove", &path, &error)),
            }
            removed_any = true;
            if !temporary {
                snapshots_removed += 1;
            }
        }
        if removed_any {
            sync_dir(&dir)?;
        }
        Ok(snapshots_removed)
    }
}

impl CheckpointStore for DirStore {
    /// Durable when it returns `Ok` (synced and renamed into place); the
    /// directory store has no records for the transaction.
    async fn write(&mut self, id: &SnapshotId, bytes: &[u8]) -> Result<Vec<ProducerRecord>> {
        self.write_file(id, bytes)?;
        Ok(Vec::new())
    }

    async fn read(&mut self, id: &SnapshotId) -> Result<Vec<u8>> {
        self.read_file(id)
    }

    async fn collect(&mut self, job: &str, task: i32, below: u64) -> Result<usize> {
        self.collect_files(job, task, below)
    }
}

/// `<checkpoint:020>-<incarnation:016x>`: the part of a file name that
/// names the snapshot.
fn file_stem(id: &SnapshotId) -> String {
    format!("{:020}-{:016x}", id.checkpoint, id.incarnation)
}

fn snapshot_file_name(id: &SnapshotId) -> String {
    format!("{}{SNAPSHOT_SUFFIX}", file_stem(id))
}

/// The checkpoint of a snapshot file name or of a temporary file's name,
/// and whether it is a temporary file; `None` for any other name.
fn parse_file_name(name: &str) -> Option<(u64, bool)> {
    let (stem, temporary) = match name.strip_prefix('.') {
        Some(rest) => (rest.strip_suffix(TEMPORARY_SUFFIX)?, true),
        None => (name.strip_suffix(SNAPSHOT_SUFFIX)?, false),
    };
    let (checkpoint, incarnation) = stem.split_once('-')?;
    let digits = |text: &str, len: usize, radix: u32| {
        text.len() == len && text.chars().all(|c| c.is_digit(radix) && !c.is_uppercase())
    };
    if !digits(checkpoint, 20, 10) || !digits(incarnation, 16, 16) {
        return None;
    }
    Some((checkpoint.parse().ok()?, temporary))
}

/// Creates `dir` and its missing parents, syncing the parent of each
/// directory it creates (a new directory entry is durable only then).
fn create_dirs(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|parent| !parent.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Created meanwhile (another worker of the same job): fine.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {
            return Ok(());
        }
        Err(error) => return Err(io_error("create directory", dir, &error)),
    }
    match parent {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Writes `bytes` as the whole content of `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|error| io_error("create", path, &error))?;
    file.write_all(bytes)
        .map_err(|error| io_error("write", path, &error))?;
    file.sync_all()
        .map_err(|error| io_error("sync", path, &error))
}

/// Makes the entries of `dir` (a rename, a new file, a removal) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| io_error("sync directory", dir, &error))
}

/// Other systems cannot open a directory to sync it (Windows makes a
/// rename durable with the file's own flush, which `sync_all` did).
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

fn io_error(action: &str, path: &Path, error: &io::Error) -> Error {
    Error::Store(format!("{action} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_parse_back_and_nothing_else_does() {
        let id = SnapshotId {
            job: "j".into(),
            task: 0,
            checkpoint: 42,
            incarnation: 0xab,
        };
        assert_eq!(
            snapshot_file_name(&id),
            "00000000000000000042-00000000000000ab.snap"
        );
        assert_eq!(parse_file_name(&snapshot_file_name(&id)), Some((42, false)));
        let temporary = format!(".{}{TEMPORARY_SUFFIX}", file_stem(&id));
        assert_eq!(parse_file_name(&temporary), Some((42, true)));
        for other in [
            "00000000000000000042-00000000000000ab.snap.bak",
            "0000000000000000042-00000000000000ab.snap",
            "00000000000000000042-00000000000000AB.snap",
            "00000000000000000042_00000000000000ab.snap",
            ".00000000000000000042-00000000000000ab.snap",
            "notes.txt",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }
}
