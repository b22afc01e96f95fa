//! Shared by the binary's test files (`mod process;`): running `waterline` as an operator would.

use std::path::Path;
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

/// Writes `text` to `dir/name` and returns the path as an argument for `waterline`.
#[allow(dead_code)] // not every test file writes inputs
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Repeatable noise for test inputs: a xorshift generator, uniform in [−0.5, 0.5).
#[allow(dead_code)] // not every test file generates readings
pub(crate) struct Noise(u64);

#[allow(dead_code)]
impl Noise {
    pub(crate) fn new() -> Self {
        Noise(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1000) as f64 / 1000.0 - 0.5
    }
}
