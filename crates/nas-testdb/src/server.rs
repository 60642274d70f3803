//! A PostgreSQL server for tests: the one the tests should use ([`TestServer::find_or_start`],
//! what `cargo xtask test` gives them as `NAS_TEST_POSTGRES`), or a throwaway one of a test's
//! own ([`TestServer::start`]) that it may stop and restart.
//!
//! [`TestServer::find_or_start`] takes, in order: the server `NAS_TEST_POSTGRES` names; the
//! local one on 127.0.0.1:5432 if it accepts connections; else a throwaway server.
//! `NAS_XTASK_IGNORE_LOCAL_POSTGRES=1` skips the local server, to try the throwaway path on a
//! machine that has one.
//!
//! A throwaway server lives in a temporary folder (initdb + pg_ctl from PATH or
//! /usr/lib/postgresql/*/bin, run as the `postgres` user when root, since initdb refuses
//! root), listens on a free port of 127.0.0.1 and is stopped and deleted when the
//! [`TestServer`] is dropped, also when the test fails (not when the process is killed).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::ENV;

const IGNORE_LOCAL: &str = "NAS_XTASK_IGNORE_LOCAL_POSTGRES";
const LOCAL_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

static SERVERS: AtomicU32 = AtomicU32::new(0);

/// A server the tests use; a throwaway one stops when this is dropped.
pub struct TestServer {
    url: String,
    throwaway: Option<Throwaway>,
}

impl TestServer {
    /// The URL of the server's `postgres` database (what `NAS_TEST_POSTGRES` takes).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server the tests should use: `NAS_TEST_POSTGRES`, the local one, or a throwaway.
    pub fn find_or_start() -> Result<TestServer> {
        if let Some(url) = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty()) {
            eprintln!("PostgreSQL tests: {ENV} is set");
            return Ok(TestServer {
                url,
                throwaway: None,
            });
        }
        let ignore_local = std::env::var(IGNORE_LOCAL).is_ok_and(|v| v == "1");
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 5432));
        if !ignore_local && TcpStream::connect_timeout(&local, Duration::from_secs(2)).is_ok() {
            eprintln!("PostgreSQL tests: the local server ({LOCAL_URL})");
            return Ok(TestServer {
                url: LOCAL_URL.into(),
                throwaway: None,
            });
        }
        TestServer::start().context(format!(
            "no PostgreSQL runs on 127.0.0.1:5432 and {ENV} is unset, so a throwaway server \
             was to be started; or point the tests at a server with \
             {ENV}=postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE (a user that may create \
             databases)"
        ))
    }

    /// Starts a throwaway server of the caller's own (initdb + pg_ctl); an error saying what
    /// to install when they are not there.
    pub fn start() -> Result<TestServer> {
        let Some((initdb, pg_ctl)) = find_binaries() else {
            bail!(
                "a throwaway PostgreSQL server needs initdb and pg_ctl, found neither on PATH \
                 nor in /usr/lib/postgresql/*/bin: install PostgreSQL (`apt-get install \
                 postgresql`)"
            );
        };
        let server = Throwaway::start(&initdb, &pg_ctl)?;
        Ok(TestServer {
            url: format!("postgresql://postgres@127.0.0.1:{}/postgres", server.port),
            throwaway: Some(server),
        })
    }

    /// Stops a throwaway server (`pg_ctl stop -m fast`: connections are cut); it keeps its
    /// data and port for [`TestServer::restart`].
    pub fn stop(&self) -> Result<()> {
        let server = self.own("stop")?;
        let mut stop = server.pg_ctl();
        stop.args(["-m", "fast", "-w", "stop"]);
        run_quiet(&mut stop, "pg_ctl stop")
    }

    /// Restarts a throwaway server on the same port (`pg_ctl restart -m fast`: connections
    /// are cut), or starts it again after [`TestServer::stop`].
    pub fn restart(&self) -> Result<()> {
        let server = self.own("restart")?;
        if server.data().join("postmaster.pid").exists() {
            let mut restart = server.pg_ctl();
            restart.args(["-m", "fast", "-w", "-t", "60", "restart"]);
            run_quiet(&mut restart, "pg_ctl restart")
        } else {
            server.pg_start()
        }
    }

    fn own(&self, what: &str) -> Result<&Throwaway> {
        self.throwaway.as_ref().with_context(|| {
            format!(
                "cannot {what} the PostgreSQL server at {}: it is not a throwaway server of this \
                 process",
                self.url
            )
        })
    }
}

struct Throwaway {
    dir: PathBuf,
    pg_ctl: PathBuf,
    port: u16,
    /// Run as the `postgres` user (initdb refuses root).
    as_postgres: bool,
}

impl Throwaway {
    fn start(initdb: &Path, pg_ctl: &Path) -> Result<Throwaway> {
        let as_postgres = is_root() && user_exists("postgres");
        let dir = std::env::temp_dir().join(format!(
            "nas-test-postgres-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
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
            dir,
            pg_ctl: pg_ctl.to_path_buf(),
            port: free_port()?,
            as_postgres,
        };
        let mut init = command(initdb, as_postgres);
        init.arg("-D")
            .arg(server.data())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        run_quiet(&mut init, "initdb")?;
        server.pg_start()?;
        eprintln!(
            "PostgreSQL tests: a throwaway server at 127.0.0.1:{} ({})",
            server.port,
            server.dir.display()
        );
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `pg_ctl -D DATA`, as the right user.
    fn pg_ctl(&self) -> Command {
        let mut cmd = command(&self.pg_ctl, self.as_postgres);
        cmd.arg("-D").arg(self.data());
        cmd
    }

    fn pg_start(&self) -> Result<()> {
        let mut start = self.pg_ctl();
        start
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.dir.display(),
                self.port
            ))
            .arg("start");
        run_quiet(&mut start, "pg_ctl start").map_err(|e| {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            e.context(format!("the server's log:\n{log}"))
        })
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let mut stop = self.pg_ctl();
            stop.args(["-m", "fast", "-w", "stop"]);
            match stop.output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "cannot stop the throwaway PostgreSQL in {}: {}",
                    self.data().display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("cannot run {}: {e}", self.pg_ctl.display()),
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
