//! The directory store on a real file system: round trips, missing,
//! corrupted and truncated files, leftover temporary files, collection, and
//! two incarnations writing the same checkpoint number.

use std::fs;
use std::path::{Path, PathBuf};

use eddyline_engine::Error;
use eddyline_engine::checkpoint::{CheckpointStore, DirStore, SnapshotId};

/// A directory of its own under the system's temporary directory, removed
/// when the test ends (pass or fail).
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "eddyline-checkpoint-dir-{test}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        Self(path)
    }

    fn store(&self) -> DirStore {
        DirStore::new(&self.0)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn id(checkpoint: u64, incarnation: u64) -> SnapshotId {
    SnapshotId {
        job: "orders".to_string(),
        task: 2,
        checkpoint,
        incarnation,
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_written_snapshot_reads_back_byte_equal_from_its_documented_path() {
    let root = TempRoot::new("round-trip");
    let mut store = root.store();
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    block_on(async {
        let records = store.write(&id(7, 0xab), &payload).await.unwrap();
        assert!(records.is_empty(), "the directory store has no records");
        assert_eq!(store.read(&id(7, 0xab)).await.unwrap(), payload);
        // Another store on the same root (a restarted worker) reads it too.
        assert_eq!(root.store().read(&id(7, 0xab)).await.unwrap(), payload);
    });
    let path = root
        .0
        .join("orders/task-2/00000000000000000007-00000000000000ab.snap");
    assert_eq!(store.snapshot_path(&id(7, 0xab)).unwrap(), path);
    assert!(path.is_file());
    assert_eq!(
        names_in(path.parent().unwrap()),
        ["00000000000000000007-00000000000000ab.snap"],
        "no temporary file is left behind"
    );
}

#[test]
fn a_snapshot_never_written_is_missing_and_the_error_names_the_path() {
    let root = TempRoot::new("missing");
    let mut store = root.store();
    block_on(async {
        store.write(&id(1, 1), b"one").await.unwrap();
        for absent in [id(2, 1), id(1, 2)] {
            let error = store.read(&absent).await.unwrap_err();
            let Error::MissingSnapshot(message) = &error else {
                panic!("{error:?}");
            };
            let path = store.snapshot_path(&absent).unwrap();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        // A job that never wrote has no directory at all.
        let other = SnapshotId {
            job: "other".to_string(),
            ..id(1, 1)
        };
        assert!(matches!(
            store.read(&other).await,
            Err(Error::MissingSnapshot(_))
        ));
    });
}

#[test]
fn a_file_with_a_byte_flipped_on_disk_is_a_corrupt_snapshot() {
    let root = TempRoot::new("flipped");
    let mut store = root.store();
    let path = store.snapshot_path(&id(3, 9)).unwrap();
    block_on(async {
        store.write(&id(3, 9), b"window state").await.unwrap();
        for position in [0, 10, 40, 50] {
            let mut bytes = fs::read(&path).unwrap();
            bytes[position] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
            let error = store.read(&id(3, 9)).await.unwrap_err();
            let Error::CorruptSnapshot(message) = &error else {
                panic!("byte {position}: {error:?}");
            };
            assert!(message.contains(&path.display().to_string()), "{message}");
            bytes[position] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
            assert_eq!(store.read(&id(3, 9)).await.unwrap(), b"window state");
        }
    });
}

#[test]
fn a_truncated_file_is_a_corrupt_snapshot_never_a_prefix() {
    let root = TempRoot::new("truncated");
    let mut store = root.store();
    let path = store.snapshot_path(&id(4, 1)).unwrap();
    block_on(async {
        store.write(&id(4, 1), &[5u8; 100]).await.unwrap();
        let full = fs::read(&path).unwrap();
        for kept in [0, 1, 20, full.len() - 4, full.len() - 1] {
            fs::write(&path, &full[..kept]).unwrap();
            let error = store.read(&id(4, 1)).await.unwrap_err();
            assert!(
                matches!(&error, Error::CorruptSnapshot(m) if m.contains("truncated")),
                "{kept} bytes kept: {error:?}"
            );
        }
    });
}

#[test]
fn a_file_renamed_to_another_snapshots_name_is_refused() {
    let root = TempRoot::new("renamed");
    let mut store = root.store();
    block_on(async {
        store.write(&id(5, 1), b"five").await.unwrap();
        let from = store.snapshot_path(&id(5, 1)).unwrap();
        let to = store.snapshot_path(&id(6, 1)).unwrap();
        fs::rename(&from, &to).unwrap();
        let error = store.read(&id(6, 1)).await.unwrap_err();
        assert!(
            matches!(&error, Error::CorruptSnapshot(m) if m.contains("holds snapshot orders/task-2/checkpoint-5-")),
            "{error:?}"
        );
    });
}

#[test]
fn a_leftover_temporary_file_is_never_read_as_a_snapshot_and_is_collected() {
    let root = TempRoot::new("temporary");
    let mut store = root.store();
    block_on(async {
        store.write(&id(1, 1), b"one").await.unwrap();
        let dir = store.snapshot_path(&id(1, 1)).unwrap();
        let dir = dir.parent().unwrap().to_path_buf();
        // What a crash between the write and the rename leaves: the
        // complete envelope of checkpoint 2, under the temporary name.
        let complete = fs::read(store.snapshot_path(&id(1, 1)).unwrap()).unwrap();
        let temporary = dir.join(".00000000000000000002-0000000000000001.snap.tmp");
        fs::write(&temporary, &complete).unwrap();
        assert!(matches!(
            store.read(&id(2, 1)).await,
            Err(Error::MissingSnapshot(_))
        ));
        // A collect below its checkpoint keeps it (a write may be going on)...
        assert_eq!(store.collect("orders", 2, 2).await.unwrap(), 1);
        assert!(temporary.exists());
        // ...one above removes it, and counts snapshot files only.
        assert_eq!(store.collect("orders", 2, 3).await.unwrap(), 0);
        assert!(!temporary.exists());
        assert!(names_in(&dir).is_empty(), "{:?}", names_in(&dir));
    });
}

#[test]
fn collect_removes_exactly_the_task_snapshots_below_the_checkpoint() {
    let root = TempRoot::new("collect");
    let mut store = root.store();
    block_on(async {
        for checkpoint in 1..=5 {
            store.write(&id(checkpoint, 1), b"s").await.unwrap();
        }
        let other_task = SnapshotId {
            task: 3,
            ..id(1, 1)
        };
        store.write(&other_task, b"t").await.unwrap();
        let dir = store.snapshot_path(&id(1, 1)).unwrap();
        let dir = dir.parent().unwrap().to_path_buf();
        fs::write(dir.join("README"), b"not ours").unwrap();
        assert_eq!(store.collect("orders", 2, 4).await.unwrap(), 3);
        for checkpoint in 1..4 {
            assert!(matches!(
                store.read(&id(checkpoint, 1)).await,
                Err(Error::MissingSnapshot(_))
            ));
        }
        for checkpoint in 4..=5 {
            assert_eq!(store.read(&id(checkpoint, 1)).await.unwrap(), b"s");
        }
        assert_eq!(store.read(&other_task).await.unwrap(), b"t");
        assert!(dir.join("README").exists(), "files not ours are left alone");
        assert_eq!(store.collect("orders", 2, 4).await.unwrap(), 0);
        assert_eq!(store.collect("orders", 9, 100).await.unwrap(), 0);
    });
}

#[test]
fn two_incarnations_writing_the_same_checkpoint_number_keep_both_files() {
    let root = TempRoot::new("incarnations");
    let mut store = root.store();
    block_on(async {
        store.write(&id(8, 0x1), b"zombie").await.unwrap();
        store.write(&id(8, 0x2), b"owner").await.unwrap();
        assert_eq!(store.read(&id(8, 0x1)).await.unwrap(), b"zombie");
        assert_eq!(store.read(&id(8, 0x2)).await.unwrap(), b"owner");
        let dir = store.snapshot_path(&id(8, 1)).unwrap();
        assert_eq!(
            names_in(dir.parent().unwrap()),
            [
                "00000000000000000008-0000000000000001.snap",
                "00000000000000000008-0000000000000002.snap"
            ]
        );
    });
}

#[test]
fn job_names_that_are_not_one_path_component_are_refused() {
    let root = TempRoot::new("names");
    let mut store = root.store();
    block_on(async {
        for job in ["", "..", "a/b", "../escape"] {
            let bad = SnapshotId {
                job: job.to_string(),
                ..id(1, 1)
            };
            assert!(
                matches!(store.write(&bad, b"x").await, Err(Error::Invalid(_))),
                "{job:?}"
            );
            assert!(matches!(store.read(&bad).await, Err(Error::Invalid(_))));
            assert!(matches!(
                store.collect(job, 1, 5).await,
                Err(Error::Invalid(_))
            ));
        }
    });
    assert!(!root.0.exists(), "nothing was created for a refused name");
}

#[test]
fn a_write_into_an_unwritable_root_is_a_store_error() {
    let root = TempRoot::new("unwritable");
    fs::create_dir_all(&root.0).unwrap();
    // A file where the job's directory would go.
    fs::write(root.0.join("orders"), b"in the way").unwrap();
    let mut store = root.store();
    block_on(async {
        let error = store.write(&id(1, 1), b"x").await.unwrap_err();
        assert!(
            matches!(&error, Error::Store(m) if m.contains("orders")),
            "{error:?}"
        );
    });
}
