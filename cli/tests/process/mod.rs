//! Shared by the binary's test files (`mod process;`): running `waterline` as an operator would.

use std::process::{Command, Stdio};

/// Runs the `waterline` binary quietly: exit code, stdout, stderr.
pub(crate) fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_waterline"))
        .args(args)
        .env("WATERLINE_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
