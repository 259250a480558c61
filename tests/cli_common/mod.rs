//! What the command-line tests that start `eddy` and check its files with
//! other tools share.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// `eddy ARGS` without the caller's Kafka settings or seed (a test harness
/// may export `EDDY_KAFKA_*` variables for other tests), giving up on
/// connecting after `connect_timeout_ms` (`EDDY_KAFKA_TIMEOUT_MS`).
pub fn eddy_command(args: &[&str], connect_timeout_ms: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.args(args);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("EDDY_KAFKA_") || name == "EDDY_SEED" {
            command.env_remove(name);
        }
    }
    command.env("EDDY_KAFKA_TIMEOUT_MS", connect_timeout_ms.to_string());
    command
}

/// A python3 that can import `module`, with the pip `package` installed if
/// it cannot (the test command must work on a fresh machine; Debian's
/// python3 needs `--break-system-packages`).
pub fn python_with(module: &str, package: &str) {
    let has = || {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if has() {
        return;
    }
    for extra in [&[][..], &["--break-system-packages"][..]] {
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", package])
            .args(extra)
            .status();
        if has() {
            return;
        }
    }
    panic!("python3 with {module} is needed: pip install {package}");
}
