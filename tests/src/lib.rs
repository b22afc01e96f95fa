//! Shared harness for Waterline's cross-crate tests: real services, never mocks.
//!
//! - [`PgDb`]: a fresh PostgreSQL database per test (dropped afterwards), on the server named
//!   by `WATERLINE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! - [`SqliteDb`]: a fresh SQLite file in a temporary directory.
//! - [`Mosquitto`]: a private Mosquitto broker on a free loopback port with a persistent-session
//!   configuration (queue limits raised), stopped when dropped; it can be restarted on the same
//!   port and persistence directory to test broker restarts.
//! - [`PgServer`]: a private PostgreSQL server (own data directory and port) that a
//!   fault-injection test may stop, restart or kill.
//! - [`ModbusServer`]: a Modbus TCP device with settable registers and an exception range.
//! - [`bench`]: flags and peak-memory reporting for the benchmark binaries.
//! - [`fixtures`]: a test network, native uplinks, and a QoS 1 publisher that waits for the
//!   broker's acknowledgements.

pub mod bench;
pub mod fixtures;
pub mod modbus_server;
pub mod pg_server;

pub use modbus_server::ModbusServer;
pub use pg_server::PgServer;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use waterline_store::{Store, StoreOptions};

use waterline_store::testing::TestDb;
pub use waterline_store::testing::pg_admin_url;

/// A fresh PostgreSQL database, dropped when this value is dropped (by the store's
/// [`TestDb`], which creates and drops it).
#[derive(Debug)]
pub struct PgDb {
    pub name: String,
    pub url: String,
    _db: TestDb,
}

impl PgDb {
    /// Creates an empty database on the test server. Fails loudly when the server is
    /// unreachable: CI starts it, so a missing server is a broken environment, not a skip.
    pub async fn create() -> anyhow::Result<PgDb> {
        let db = TestDb::postgres().await.with_context(|| {
            format!(
                "PostgreSQL test server at {} is not reachable (set WATERLINE_TEST_DATABASE_URL)",
                pg_admin_url()
            )
        })?;
        let TestDb::Postgres { name, url } = &db else {
            bail!("TestDb::postgres gave a database that is not PostgreSQL");
        };
        Ok(PgDb {
            name: name.clone(),
            url: url.clone(),
            _db: db,
        })
    }

    /// Opens the store on this database (migrating it).
    pub async fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.url, StoreOptions::default()).await?)
    }

    /// Opens the store without TimescaleDB even where the server has it.
    pub async fn plain_store(&self) -> anyhow::Result<Store> {
        let opts = StoreOptions {
            use_timescale: false,
            ..StoreOptions::default()
        };
        Ok(Store::open(&self.url, opts).await?)
    }
}

/// A fresh SQLite store file.
#[derive(Debug)]
pub struct SqliteDb {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl SqliteDb {
    /// A new, empty database file in a temporary directory.
    pub fn create() -> anyhow::Result<SqliteDb> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Ok(SqliteDb { dir, url })
    }

    /// Opens the store (migrating it).
    pub async fn store(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.url, StoreOptions::default()).await?)
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A private Mosquitto broker for one test.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// A second listener with TLS and password authentication, when started secure.
    pub secure: Option<SecureListener>,
}

/// The TLS listener of a secure test broker.
#[derive(Debug, Clone)]
pub struct SecureListener {
    pub port: u16,
    /// PEM of the test CA that signed the broker's certificate.
    pub ca_file: PathBuf,
    pub username: String,
    pub password: String,
}

fn run_tool(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A throw-away CA and a server certificate for 127.0.0.1 / localhost (openssl CLI).
fn make_certificates(dir: &Path) -> anyhow::Result<()> {
    let d = |f: &str| dir.join(f);
    run_tool(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(d("ca.key"))
            .arg("-out")
            .arg(d("ca.pem"))
            .args(["-subj", "/CN=waterline-test-ca"]),
    )?;
    run_tool(
        Command::new("openssl")
            .args(["req", "-newkey", "rsa:2048", "-nodes"])
            .arg("-keyout")
            .arg(d("server.key"))
            .arg("-out")
            .arg(d("server.csr"))
            .args(["-subj", "/CN=localhost"]),
    )?;
    std::fs::write(d("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")?;
    run_tool(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(d("server.csr"))
            .arg("-CA")
            .arg(d("ca.pem"))
            .arg("-CAkey")
            .arg(d("ca.key"))
            .arg("-out")
            .arg(d("server.pem"))
            .arg("-extfile")
            .arg(d("ext.cnf")),
    )?;
    Ok(())
}

impl Mosquitto {
    /// Starts Mosquitto on a free loopback port. Persistent sessions keep up to 1,000,000
    /// queued QoS 1 messages (the default 1,000 silently drops the rest).
    pub fn start() -> anyhow::Result<Mosquitto> {
        let mut last = None;
        for _ in 0..5 {
            let mut m = Mosquitto {
                port: free_port(),
                dir: tempfile::tempdir()?,
                child: None,
                secure: None,
            };
            match m.spawn() {
                Ok(()) => return Ok(m),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("mosquitto did not start")))
    }

    /// Starts Mosquitto with a plain listener (anonymous, for test publishers) and a TLS
    /// listener that requires a username and password (for the service under test).
    pub fn start_secure() -> anyhow::Result<Mosquitto> {
        let dir = tempfile::tempdir()?;
        make_certificates(dir.path())?;
        let passwd = dir.path().join("passwd");
        run_tool(
            Command::new("mosquitto_passwd")
                .args(["-b", "-c"])
                .arg(&passwd)
                .args(["ingest", "s3cret-pw"]),
        )?;
        let mut m = Mosquitto {
            port: free_port(),
            dir,
            child: None,
            secure: Some(SecureListener {
                port: free_port(),
                ca_file: PathBuf::new(),
                username: "ingest".into(),
                password: "s3cret-pw".into(),
            }),
        };
        if let Some(s) = m.secure.as_mut() {
            s.ca_file = m.dir.path().join("ca.pem");
        }
        m.spawn()?;
        Ok(m)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.path().display();
        let mut conf = format!(
            "per_listener_settings true\nuser root\npersistence true\npersistence_location {dir}/\n\
             max_queued_messages 1000000\nmax_inflight_messages 1000\nmessage_size_limit 0\n\
             log_dest file {dir}/mosquitto.log\n\
             listener {port} 127.0.0.1\nallow_anonymous true\n",
            port = self.port,
        );
        if let Some(s) = &self.secure {
            conf.push_str(&format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {dir}/passwd\n\
                 cafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\n",
                port = s.port,
            ));
        }
        std::fs::write(self.config_path(), conf)?;
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(self.config_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run mosquitto (is it installed? .ci/run installs it)")?;
        self.child = Some(child);
        if !wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(10),
        ) {
            self.stop();
            bail!("mosquitto is not listening on {}", self.port);
        }
        if let Some(s) = &self.secure
            && !wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], s.port)),
                Duration::from_secs(10),
            )
        {
            let port = s.port;
            self.stop();
            bail!("mosquitto's TLS listener is not up on {port}");
        }
        Ok(())
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, so it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port with the same persistence.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Where the broker keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mosquitto_path() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("mosquitto")
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
