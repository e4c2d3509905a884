//! The local PostgreSQL the tests use: a fresh schema for each test, dropped when it ends.
//!
//! The server is named by `PHASEGATE_TEST_POSTGRES` (default [`DEFAULT`]). When it cannot be
//! reached the test says so loudly (SKIPPED, why, and how to start it) and passes, except under
//! `CI=true`, where a skip would hide a broken setup behind a green run: there it fails.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The server the tests use when `PHASEGATE_TEST_POSTGRES` is not set: the local one, trusting
/// local connections, as `.ci/run` and `scripts/test` start it.
pub const DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How to start the local PostgreSQL.
const START: &str = "start PostgreSQL: `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     (./scripts/test and .ci/run do it), or point PHASEGATE_TEST_POSTGRES at one";

/// The server's URL.
pub fn url() -> String {
    std::env::var("PHASEGATE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT.to_string())
}

/// A schema of the test's own on the test server; dropped (with everything in it) when this is.
#[derive(Debug)]
pub struct Schema {
    pub name: String,
    url: String,
}

impl Schema {
    /// Connection options whose `search_path` is this schema, so that the store's tables (and
    /// its migrations' record) go in it.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("the test server's URL parses")
            .options([("search_path", self.name.as_str())])
    }

    /// The schema as a URL, as a user gives `--db`.
    pub fn url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-csearch_path%3D{}", self.url, self.name)
    }

    /// A connection to the schema, to look at it as `psql` would.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect_with(&self.options()).await.expect("the schema's connection")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop runs outside async code; a runtime of its own, on a thread of its own, so that a
        // test's runtime is never blocked from inside.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE")))
                    .execute(&mut connection)
                    .await?;
                connection.close().await
            })
        });
        if let Ok(Err(error)) = dropped.join() {
            eprintln!("the test schema `{}` was not dropped: {error}", self.name);
        }
    }
}

/// A fresh, empty schema on the test server, or `None` after saying loudly that the test skips
/// because the server cannot be reached (a failure under `CI=true`).
pub async fn schema() -> Option<Schema> {
    let url = url();
    let mut connection = match PgConnection::connect(&url).await {
        Ok(connection) => connection,
        Err(error) => {
            let reason = format!("PostgreSQL at `{url}` cannot be reached: {error}");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{reason}; CI=true, so this fails rather than skips. To run it: {START}");
            }
            super::skip(&reason, START);
            return None;
        }
    };
    let name = format!("phasegate_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
        .execute(&mut connection)
        .await
        .expect("a test schema");
    let _ = connection.close().await;
    Some(Schema { name, url })
}
