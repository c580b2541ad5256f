//! The first contact with the database, with failures said so that a person can act on them:
//! an unreachable server named with its address within two seconds, a missing PostgreSQL
//! database with the command that creates it, a SQLite file whose directory does not exist.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::store::StoreError;

/// How long the first connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects once to the PostgreSQL server of `database_url`, or says why it cannot.
pub(super) async fn postgres(database_url: &str) -> Result<(), StoreError> {
    let options: PgConnectOptions = database_url
        .parse()
        .map_err(|e| unreachable(format!("not a PostgreSQL URL: {e}")))?;
    let address = format!("{}:{}", options.get_host(), options.get_port());
    let database = options
        .get_database()
        .unwrap_or(options.get_username())
        .to_string();
    let user = options.get_username().to_string();
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Err(_) => Err(unreachable(format!(
            "cannot reach {address}: no answer within {} s (is PostgreSQL running there, and \
             reachable from this host?)",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(error)) => Err(unreachable(explain(&error, &address, &database, &user))),
    }
}

fn unreachable(message: String) -> StoreError {
    StoreError::Unavailable(message)
}

/// What a failed first connection means, in words.
fn explain(error: &sqlx::Error, address: &str, database: &str, user: &str) -> String {
    match error {
        sqlx::Error::Io(io) => {
            let reason = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (nothing listens on that port: is PostgreSQL running, and \
                     is this its port?)"
                        .to_string()
                }
                std::io::ErrorKind::TimedOut => "the connection timed out".to_string(),
                _ => io.to_string(),
            };
            format!("cannot reach {address}: {reason}")
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!(
                "database \"{database}\" does not exist on {address}: create it with \
                 `createdb -h {host} -p {port} -U {user} {database}` (or `CREATE DATABASE {database};` in psql)",
                host = address.rsplit_once(':').map_or(address, |(h, _)| h),
                port = address.rsplit_once(':').map_or("5432", |(_, p)| p),
            ),
            Some("28P01" | "28000") => format!(
                "PostgreSQL at {address} refused user \"{user}\": {} (check the user and password \
                 in database_url, and pg_hba.conf)",
                db.message()
            ),
            _ => format!("PostgreSQL at {address}: {}", db.message()),
        },
        sqlx::Error::Tls(tls) => format!("TLS with {address} failed: {tls}"),
        other => format!("cannot connect to {address}: {other}"),
    }
}

/// Checks that a SQLite database file can be created or opened at `path`.
pub(super) fn sqlite(path: &Path) -> Result<(), StoreError> {
    let directory = match path.parent() {
        Some(directory) if !directory.as_os_str().is_empty() => directory,
        _ => return Ok(()),
    };
    match std::fs::metadata(directory) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(unreachable(format!(
            "SQLite file {}: {} is not a directory",
            path.display(),
            directory.display()
        ))),
        Err(_) => Err(unreachable(format!(
            "SQLite file {}: the directory {} does not exist: create it (mkdir -p {}) or point \
             database_url at an existing directory",
            path.display(),
            directory.display(),
            directory.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_named_with_the_reason() {
        // Port 1 on loopback: nothing listens.
        let error = postgres("postgres://postgres@127.0.0.1:1/test")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot reach 127.0.0.1:1: connection refused"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_directory_is_named() {
        let error = sqlite(Path::new("/nonexistent-verifyd/dir/v.db"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("the directory /nonexistent-verifyd/dir does not exist"),
            "{error}"
        );
        assert!(sqlite(Path::new("v.db")).is_ok());
    }
}
