//! Fresh databases for the SQL and use-case tests: a SQLite file, or a new PostgreSQL database
//! on `VERIFYD_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use sqlx::Connection;

use super::SqlStore;

/// Defines `name::sqlite` and `name::postgres` for an async test body `name(&TestDb)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::store::test_db::TestDb::sqlite().await;
                super::$name(&db).await;
                db.drop().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::store::test_db::TestDb::postgres().await;
                super::$name(&db).await;
                db.drop().await;
            }
        }
    )+};
}

/// A store on a fresh database.
pub(crate) struct TestDb {
    /// The store.
    pub store: SqlStore,
    /// Its URL.
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn postgres_admin_url() -> String {
    std::env::var("VERIFYD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

impl TestDb {
    /// A store on a new SQLite file.
    pub async fn sqlite() -> TestDb {
        Self::sqlite_prepared(|_| async {}).await
    }

    /// A store on a new SQLite file that `prepare` got first (by its URL, with the
    /// `mode=rwc` that lets it create the file), before the store's migrations ran.
    pub async fn sqlite_prepared<F, Fut>(prepare: F) -> TestDb
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        prepare(format!("{url}?mode=rwc")).await;
        TestDb {
            store: SqlStore::connect(&url).await.unwrap(),
            url,
            postgres: None,
            _dir: Some(dir),
        }
    }

    /// A store on a new PostgreSQL database.
    pub async fn postgres() -> TestDb {
        Self::postgres_prepared(|_| async {}).await
    }

    /// A store on a new PostgreSQL database that `prepare` got first (by its URL), before the
    /// store's migrations ran.
    pub async fn postgres_prepared<F, Fut>(prepare: F) -> TestDb
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let admin = postgres_admin_url();
        let name = format!("verifyd_store_{}", uuid::Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} is needed (set VERIFYD_TEST_DATABASE_URL): {e}")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .unwrap();
        let _ = connection.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        prepare(url.clone()).await;
        TestDb {
            store: SqlStore::connect(&url).await.unwrap(),
            url,
            postgres: Some((admin, name)),
            _dir: None,
        }
    }

    /// Whether it is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Closes the store and drops the database.
    pub async fn drop(self) {
        self.store.close().await;
        if let Some((admin, name)) = self.postgres {
            let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut connection)
            .await
            .unwrap();
        }
    }
}
