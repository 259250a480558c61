//! `eddy replay --job JOB.toml --input FILE.parquet [--out FILE.parquet]`:
//! a recording through the job as a bounded backfill, on the worker's one
//! driver over the Parquet transport.
//!
//! The committed output goes to `--out` as a recording of the job's output
//! topic (late and dead-letter records beside it, as `NAME.late.parquet`
//! and `NAME.dead-letter.parquet`, when there are any); without `--out` a
//! summary only. A bad job or recording: one line, exit 2, nothing
//! written. A worker that fails (a bad record under `on_bad_record =
//! "fail"`): exit 1.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use eddyline_engine::Error;
use eddyline_engine::job::Job;
use eddyline_engine::recording::{Recording, ReplayOptions, replay};
use eddyline_engine::worker::Stopped;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{CliError, Outcome};

/// Replays a recorded topic through a job as a bounded backfill.
///
/// The recording's partitions are read in offset order; at their end every
/// task's watermark goes to i64::MAX, so every pending window fires. The
/// same worker as `eddy live` runs it (checkpoints and transactions
/// included), over the recording instead of Kafka. A progress bar with
/// rows/s is drawn on a terminal.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The job file (TOML; see docs/jobs.md).
    #[arg(long, value_name = "JOB.toml")]
    job: PathBuf,
    /// A recording of the job's input topic (see docs/recordings.md);
    /// repeat for a job with several input topics.
    #[arg(long, value_name = "FILE.parquet", required = true)]
    input: Vec<PathBuf>,
    /// Write the committed output here as a recording of the job's output
    /// topic; late and dead-letter records go beside it as
    /// NAME.late.parquet and NAME.dead-letter.parquet.
    #[arg(long, value_name = "FILE.parquet")]
    out: Option<PathBuf>,
}

/// Where each output topic goes: the output to `out`, the others beside it.
fn output_paths(job: &Job, out: &Path) -> Vec<(String, PathBuf)> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let beside = |suffix: &str| out.with_file_name(format!("{stem}.{suffix}.parquet"));
    let mut paths = vec![
        (job.output_topic().to_string(), out.to_path_buf()),
        (job.late_topic().to_string(), beside("late")),
    ];
    if let Some(dead) = job.dead_letter_topic() {
        paths.push((dead.to_string(), beside("dead-letter")));
    }
    paths
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} rows, {per_sec}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar
}

pub fn run(args: &ReplayArgs) -> Result<Outcome, CliError> {
    let job = Job::from_file(&args.job).map_err(|e| CliError::BadInput(e.to_string()))?;
    let mut inputs = Vec::new();
    for path in &args.input {
        let recording = Recording::read(path).map_err(|e| CliError::BadInput(e.to_string()))?;
        if !job.input_topics().contains(&recording.info.topic) {
            return Err(CliError::BadInput(format!(
                "{}: a recording of topic {}, and job {} reads topic {}",
                path.display(),
                recording.info.topic,
                job.name(),
                job.input_topics().join(", ")
            )));
        }
        inputs.push(recording);
    }
    if let Some(out) = &args.out {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(CliError::BadInput(format!(
                "--out {}: no such directory",
                out.display()
            )));
        }
    }
    let rows: usize = inputs.iter().map(Recording::len).sum();
    let bar = progress_bar(rows as u64);
    let source = format!(
        "eddy replay --job {} --input {}",
        args.job.display(),
        args.input
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" --input ")
    );
    let paths = args.out.as_deref().map(|out| output_paths(&job, out));
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| CliError::Internal(format!("a runtime: {e}")))?;
    let result = runtime.block_on(async {
        let done = replay(job, &inputs, &ReplayOptions::default(), |stats| {
            bar.set_position(stats.records_in)
        })
        .await
        .map_err(|e| match e {
            Error::Invalid(_) => CliError::BadInput(e.to_string()),
            other => CliError::Internal(other.to_string()),
        })?;
        bar.finish_and_clear();
        match &done.stopped {
            Stopped::Finished => {}
            other => {
                return Err(CliError::Internal(format!(
                    "the replay's worker stopped: {other:?}"
                )));
            }
        }
        let mut written = Vec::new();
        for (topic, path) in paths.iter().flatten() {
            let (records, _) = done
                .transport
                .committed(topic)
                .await
                .map_err(|e| CliError::Internal(e.to_string()))?;
            let is_output = Some(path.as_path()) == args.out.as_deref();
            if !is_output && records.values().all(Vec::is_empty) {
                continue;
            }
            let rows = done
                .transport
                .write_committed(topic, path, &source)
                .await
                .map_err(|e| CliError::Internal(e.to_string()))?;
            written.push(format!("{rows} rows of {topic} to {}", path.display()));
        }
        Ok((done.stats, written))
    });
    let (stats, written) = result?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "replayed {} records in {seconds:.2} s ({:.0} rows/s): {} outputs, {} checkpoints",
        stats.records_in,
        stats.records_in as f64 / seconds.max(1e-9),
        stats.records_out,
        stats.checkpoints_committed
    );
    for line in written {
        println!("wrote {line}");
    }
    Ok(Outcome::Success)
}
