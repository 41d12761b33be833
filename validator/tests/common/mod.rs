//! The node's test helper ([`minerpool_node::testing`]: a node started in-process on a fresh
//! database of the test server), plus the key files and the runs of the validator's binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use minerpool_node::testing::*;

/// A file in a directory of its own under the system's temporary directory, removed on drop.
pub struct TempFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(name: &str, content: &str) -> TempFile {
        let dir = std::env::temp_dir().join(minerpool_core::testing::unique_database("validator"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        TempFile { dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The output of a finished child process, as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end (at most 60 s).
pub async fn run(command: &mut tokio::process::Command) -> Run {
    command.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command finished within 60 s")
        .expect("the command started");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
