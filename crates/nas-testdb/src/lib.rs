//! A fresh PostgreSQL database for each test, dropped when the test ends.
//!
//! The server is named by `NAS_TEST_POSTGRES` (a `postgresql://` URL of a role allowed to
//! create databases), or is `postgresql://postgres@127.0.0.1:5432/postgres` when it is unset.
//! [`TestDb::create`] makes `nas_test_<tag>_<pid>_<n>` there and gives its URL (same user,
//! password, host and port, that database); dropping the [`TestDb`] drops the database
//! (`WITH (FORCE)`, so connections a test left open do not keep it), ignoring errors.
//!
//! A server that cannot be reached is a failure, never a skipped test: the panic says which
//! URL was tried and how to get one (start PostgreSQL, set `NAS_TEST_POSTGRES`, or run
//! `cargo xtask test`, which starts a throwaway server when none is running).
//!
//! [`TestServer`] finds that server for `cargo xtask test`, or starts a throwaway one a test
//! may stop and restart.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use postgres::{Client, Config, NoTls};

mod server;
pub use server::TestServer;

/// The variable naming the test server.
pub const ENV: &str = "NAS_TEST_POSTGRES";
/// The server used when `NAS_TEST_POSTGRES` is unset.
pub const DEFAULT_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The URL of the test server (`NAS_TEST_POSTGRES`, or [`DEFAULT_URL`]).
pub fn server_url() -> String {
    std::env::var(ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string())
}

/// A database made for one test; dropped with this value.
pub struct TestDb {
    /// `postgresql://` URL of the database.
    pub url: String,
    name: String,
    server: String,
}

impl TestDb {
    /// Creates a fresh database whose name starts with `nas_test_<tag>`; panics (with what to
    /// do) when the server cannot be reached.
    pub fn create(tag: &str) -> TestDb {
        let server = server_url();
        let mut client = admin(&server);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!(
            "nas_test_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create test database {name} on {}: {e}",
                    shown(&server)
                )
            });
        TestDb {
            url: with_database(&server, &name),
            name,
            server,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(mut client) = config(&self.server).and_then(|c| c.connect(NoTls).ok()) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn config(url: &str) -> Option<Config> {
    let mut config = Config::from_str(url).ok()?;
    config.connect_timeout(CONNECT_TIMEOUT);
    Some(config)
}

/// A connection to the server's maintenance database, or a panic saying how to get one.
fn admin(server: &str) -> Client {
    let config = config(server)
        .unwrap_or_else(|| panic!("{ENV}={} is not a postgresql:// URL", shown(server)));
    config.connect(NoTls).unwrap_or_else(|e| {
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        panic!(
            "the PostgreSQL tests need a server, and none answers at {} ({cause}).\n\
             Start PostgreSQL there (e.g. `apt-get install postgresql`, trust or password auth \
             for user postgres), or set {ENV}=postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE \
             naming one whose user may create databases, or run `cargo xtask test`, which starts \
             a throwaway server when none is running.",
            shown(server),
        )
    })
}

/// `url` with its database (the path) replaced by `database`, keeping any query string.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A URL without its password, for messages.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_the_url() {
        assert_eq!(
            with_database("postgresql://u:p@h:5433/postgres", "x"),
            "postgresql://u:p@h:5433/x"
        );
        assert_eq!(with_database("postgresql://u@h", "x"), "postgresql://u@h/x");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(shown("postgresql://u:secret@h/db"), "postgresql://u@h/db");
    }

    #[test]
    fn a_database_is_created_and_dropped() {
        let db = TestDb::create("Self-Test");
        assert!(
            db.name().starts_with("nas_test_self_test_"),
            "{}",
            db.name()
        );
        let mut client = config(&db.url).unwrap().connect(NoTls).unwrap();
        let current: String = client
            .query_one("SELECT current_database()", &[])
            .unwrap()
            .get(0);
        assert_eq!(current, db.name());
        let name = db.name().to_string();
        drop(db);
        let mut admin = admin(&server_url());
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        assert_eq!(left, 0);
    }
}
