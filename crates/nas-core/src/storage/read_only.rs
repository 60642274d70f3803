//! Opening a study database without writing to it, for the commands that only read
//! (`status`, `best`, `report`, `export`).
//!
//! A WAL database is read through its `-shm` index, which SQLite creates next to the database
//! file. In a read-only folder (an archived study, a copy of `study.db` on a read-only mount)
//! that file cannot be created; the database is then opened `immutable`, reading the main file
//! alone, which holds everything once the study's last writer has closed it.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{SCHEMA_VERSION, StorageError};

pub fn open(path: &Path) -> Result<Connection, StorageError> {
    let sql = |cause| StorageError::Sql {
        path: path.to_path_buf(),
        cause,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let first = match Connection::open_with_flags(path, flags).and_then(readable) {
        Ok(conn) => return checked(path, conn),
        Err(e) => e,
    };
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let uri = format!("file:{}?immutable=1", uri_path(&absolute));
    match Connection::open_with_flags(uri, flags).and_then(readable) {
        Ok(conn) => {
            let wal = path.with_extension("db-wal");
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                // Its last writer was killed: what it wrote after the last checkpoint is in
                // the WAL, which an immutable read cannot see.
                tracing::warn!(
                    "{} cannot be read through its write-ahead log here (read-only folder); the newest trials may be missing. Make the folder writable to see them",
                    path.display()
                );
            }
            checked(path, conn)
        }
        // The first error is the one that says what is wrong with the file.
        Err(_) => Err(sql(first)),
    }
}

/// Reads the schema once, so an unopenable file fails here rather than on the first query.
fn readable(conn: Connection) -> rusqlite::Result<Connection> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(conn)
}

/// The same schema check `Storage::create` does, without creating anything.
fn checked(path: &Path, conn: Connection) -> Result<Connection, StorageError> {
    let has_meta: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|cause| StorageError::Sql {
            path: path.to_path_buf(),
            cause,
        })?;
    if !has_meta {
        return Err(StorageError::NotAStudy {
            path: path.to_path_buf(),
        });
    }
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    match version {
        // Older versions are read as they are (reading never migrates).
        Some(v)
            if v.parse::<i64>()
                .is_ok_and(|v| (1..=SCHEMA_VERSION).contains(&v)) =>
        {
            Ok(conn)
        }
        Some(v) => Err(StorageError::Schema {
            path: path.to_path_buf(),
            found: v.parse().unwrap_or(-1),
        }),
        None => Err(StorageError::NotAStudy {
            path: path.to_path_buf(),
        }),
    }
}

/// A path as the path part of an SQLite `file:` URI (RFC 3986 percent-encoding).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_paths_escape_what_a_uri_reserves() {
        assert_eq!(
            uri_path(Path::new("/a b/c?d#e%f.db")),
            "/a%20b/c%3Fd%23e%25f.db"
        );
    }

    #[test]
    fn a_database_without_a_meta_table_is_not_a_study() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE other (x INTEGER);")
            .unwrap();
        let err = open(&path).err().unwrap().to_string();
        assert!(err.contains("is not a study database"), "{err}");
    }
}
