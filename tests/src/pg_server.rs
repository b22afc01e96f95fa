//! A private PostgreSQL server for fault-injection tests: its own data directory and port, so a
//! test can stop, restart or kill it without disturbing the shared test server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::free_port;

/// The highest installed PostgreSQL's binary directory.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found under /usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .context("no initdb found under /usr/lib/postgresql/*/bin")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL server of the test's own.
#[derive(Debug)]
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

impl PgServer {
    /// Creates a cluster (trust authentication, user `postgres`) on a free port and starts it.
    pub fn start() -> anyhow::Result<PgServer> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir()?;
        let as_postgres = running_as_root();
        if as_postgres {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path()))?;
        }
        let mut s = PgServer {
            port: free_port(),
            dir,
            bin,
            as_postgres,
        };
        s.pg(&format!(
            "{} -D {} -U postgres --auth=trust --no-sync -E UTF8 > {}/initdb.log 2>&1",
            s.bin.join("initdb").display(),
            s.data().display(),
            s.dir.path().display()
        ))
        .context("initdb failed")?;
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = on\nmax_connections = 50\n",
            s.port,
            s.dir.path().display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(s.data().join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))?;
        s.start_server()?;
        Ok(s)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg(&self, shell: &str) -> anyhow::Result<()> {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", shell]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", shell]);
            c
        };
        run(&mut cmd)
    }

    fn pg_ctl(&self, args: &str) -> anyhow::Result<()> {
        self.pg(&format!(
            "{} -D {} -l {}/server.log -w -t 60 {args}",
            self.bin.join("pg_ctl").display(),
            self.data().display(),
            self.dir.path().display()
        ))
    }

    fn start_server(&mut self) -> anyhow::Result<()> {
        self.pg_ctl("start").context("pg_ctl start failed")
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await?;
        c.close().await?;
        Ok(self.url(name))
    }

    /// Fast shutdown: open sessions are cut, as in a real outage.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl("stop -m fast")
    }

    /// Starts the stopped server again on the same port and data.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.start_server()
    }

    /// Restart with a fast shutdown in between.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl("restart -m fast")
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Where the cluster lives.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop -m immediate");
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
