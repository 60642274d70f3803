//! Naming a database: `postgresql://user[:password]@host[:port]/database[?options]`, as
//! libpq takes it. The password never leaves this type: what is shown (logs, errors,
//! reports, the stored config) is the URL without it.

use std::str::FromStr;
use std::time::Duration;

use super::StorageError;

/// How long connecting may take before the database counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct StorageUrl {
    config: ::postgres::Config,
    /// The URL as given, kept only to find and hide it in texts that quote it.
    raw: String,
}

impl FromStr for StorageUrl {
    type Err = StorageError;

    fn from_str(raw: &str) -> Result<StorageUrl, StorageError> {
        let bad = |reason: &str| StorageError::BadUrl {
            url: redact_text(raw),
            reason: reason.to_string(),
        };
        if !(raw.starts_with("postgresql://") || raw.starts_with("postgres://")) {
            return Err(bad(
                "a database is named by a postgresql:// URL, e.g. postgresql://nas@db-host:5432/nas \
                 (SQLite studies need no URL: they live in their --study-dir)",
            ));
        }
        let mut config = ::postgres::Config::from_str(raw).map_err(|e| bad(&e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(bad("it names no host"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_user().is_none() {
            // libpq's default: the name of the user running the program.
            let user = std::env::var("USER").unwrap_or_else(|_| "postgres".into());
            config.user(&user);
        }
        if let Ok(password) = std::env::var("PGPASSWORD")
            && config.get_password().is_none()
        {
            config.password(password);
        }
        Ok(StorageUrl {
            config,
            raw: raw.to_string(),
        })
    }
}

impl StorageUrl {
    pub(crate) fn config(&self) -> &::postgres::Config {
        &self.config
    }

    /// The first host and port, for "cannot reach" messages.
    pub fn host_port(&self) -> (String, u16) {
        let host = match self.config.get_hosts().first() {
            Some(::postgres::config::Host::Tcp(h)) => h.clone(),
            Some(::postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        (host, port)
    }

    pub fn database(&self) -> String {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
            .to_string()
    }

    /// `text` with this URL (as given) replaced by its password-free form.
    pub fn hide_in(&self, text: &str) -> String {
        if self.config.get_password().is_none() || !text.contains(&self.raw) {
            return text.to_string();
        }
        text.replace(&self.raw, &self.to_string())
    }
}

/// Shown without password: `postgresql://user@host:port/database`.
impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (host, port) = self.host_port();
        let user = self.config.get_user().unwrap_or("postgres");
        write!(f, "postgresql://{user}@{host}:{port}/{}", self.database())
    }
}

impl std::fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StorageUrl({self})")
    }
}

/// A URL-looking text with any `:password@` removed (for errors about unparsable URLs).
fn redact_text(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &raw[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &raw[..scheme + 3], &raw[at..])
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        let url: StorageUrl = "postgresql://nas:s3cret@db.example:6543/studies"
            .parse()
            .unwrap();
        assert_eq!(url.to_string(), "postgresql://nas@db.example:6543/studies");
        assert!(!format!("{url:?}").contains("s3cret"));
        let text = "[storage]\nurl = \"postgresql://nas:s3cret@db.example:6543/studies\"\n";
        let hidden = url.hide_in(text);
        assert!(!hidden.contains("s3cret"), "{hidden}");
        assert!(hidden.contains("postgresql://nas@db.example:6543/studies"));
        assert_eq!(url.host_port(), ("db.example".to_string(), 6543));
    }

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let err = "mysql://u:pw@h/db"
            .parse::<StorageUrl>()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("postgresql://"), "{err}");
        assert!(!err.contains("pw"), "{err}");
        let err = "postgresql://u:pw@h:notaport/db"
            .parse::<StorageUrl>()
            .err()
            .unwrap()
            .to_string();
        assert!(!err.contains(":pw"), "{err}");
    }
}
