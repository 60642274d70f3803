//! A PostgreSQL server for the storage tests (`nas-testdb` reads `NAS_TEST_POSTGRES`).
//!
//! In order: the server `NAS_TEST_POSTGRES` names; the local one on 127.0.0.1:5432 if it
//! accepts connections; else a throwaway server in a temporary folder (initdb + pg_ctl from
//! PATH or /usr/lib/postgresql/*/bin), stopped and deleted when the [`TestServer`] is dropped,
//! also when the tests fail (not when xtask itself is killed). `NAS_XTASK_IGNORE_LOCAL_POSTGRES=1`
//! skips the local server, to try the throwaway path on a machine that has one.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub const ENV: &str = "NAS_TEST_POSTGRES";
const IGNORE_LOCAL: &str = "NAS_XTASK_IGNORE_LOCAL_POSTGRES";
const LOCAL_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

/// The server the tests use; a throwaway one stops when this is dropped.
pub struct TestServer {
    url: String,
    /// Held for its `Drop`, which stops the server.
    _throwaway: Option<Throwaway>,
}

impl TestServer {
    /// The URL to give the tests as `NAS_TEST_POSTGRES`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

struct Throwaway {
    dir: PathBuf,
    pg_ctl: PathBuf,
    /// Run as the `postgres` user (initdb refuses root).
    as_postgres: bool,
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if !data.join("postmaster.pid").exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        let mut stop = command(&self.pg_ctl, self.as_postgres);
        stop.arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]);
        match stop.output() {
            Ok(out) if out.status.success() => eprintln!("stopped the throwaway PostgreSQL"),
            Ok(out) => eprintln!(
                "cannot stop the throwaway PostgreSQL in {}: {}",
                data.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("cannot run {}: {e}", self.pg_ctl.display()),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Finds or starts the server the PostgreSQL tests run against.
pub fn test_server() -> Result<TestServer> {
    if let Some(url) = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty()) {
        eprintln!("PostgreSQL tests: {ENV} is set");
        return Ok(TestServer {
            url,
            _throwaway: None,
        });
    }
    let ignore_local = std::env::var(IGNORE_LOCAL).is_ok_and(|v| v == "1");
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 5432));
    if !ignore_local && TcpStream::connect_timeout(&local, Duration::from_secs(2)).is_ok() {
        eprintln!("PostgreSQL tests: the local server ({LOCAL_URL})");
        return Ok(TestServer {
            url: LOCAL_URL.into(),
            _throwaway: None,
        });
    }
    let Some((initdb, pg_ctl)) = find_binaries() else {
        bail!(
            "the storage tests need PostgreSQL, and none runs on 127.0.0.1:5432 nor are initdb \
             and pg_ctl installed to start a throwaway one: install it (`apt-get install \
             postgresql`), or point the tests at a server with \
             {ENV}=postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE (a user that may create \
             databases)"
        );
    };
    start(&initdb, &pg_ctl)
}

fn start(initdb: &Path, pg_ctl: &Path) -> Result<TestServer> {
    let as_postgres = is_root() && user_exists("postgres");
    let dir = std::env::temp_dir().join(format!("nas-xtask-postgres-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if as_postgres {
        let status = Command::new("chown")
            .arg("postgres:")
            .arg(&dir)
            .status()
            .context("cannot run chown")?;
        if !status.success() {
            bail!("cannot give {} to the postgres user", dir.display());
        }
    }
    // From here on, dropping it stops the server (if it started) and deletes the folder.
    let server = Throwaway {
        dir: dir.clone(),
        pg_ctl: pg_ctl.to_path_buf(),
        as_postgres,
    };
    let data = dir.join("data");
    let mut init = command(initdb, as_postgres);
    init.arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync");
    run_quiet(&mut init, "initdb")?;
    let port = free_port()?;
    let log = dir.join("server.log");
    let mut pg_start = command(pg_ctl, as_postgres);
    pg_start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o"])
        .arg(format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        ))
        .arg("start");
    if let Err(e) = run_quiet(&mut pg_start, "pg_ctl start") {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(e.context(format!("the server's log:\n{log}")));
    }
    let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
    eprintln!(
        "PostgreSQL tests: a throwaway server at {url} ({})",
        dir.display()
    );
    Ok(TestServer {
        url,
        _throwaway: Some(server),
    })
}

/// `program`, run as the postgres user when `as_postgres`.
fn command(program: &Path, as_postgres: bool) -> Command {
    if !as_postgres {
        return Command::new(program);
    }
    let mut cmd = if find_in_path("runuser").is_some() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]);
        c
    } else {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ]);
        c
    };
    cmd.arg(program);
    // The postgres user may not be allowed into the current folder.
    cmd.current_dir("/");
    cmd
}

fn run_quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what} ({cmd:?})"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free local port")?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// initdb and pg_ctl: from PATH, else the newest /usr/lib/postgresql/VERSION/bin.
fn find_binaries() -> Option<(PathBuf, PathBuf)> {
    if let (Some(initdb), Some(pg_ctl)) = (find_in_path("initdb"), find_in_path("pg_ctl")) {
        return Some((initdb, pg_ctl));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    let (_, bin) = versions.pop()?;
    Some((bin.join("initdb"), bin.join("pg_ctl")))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
