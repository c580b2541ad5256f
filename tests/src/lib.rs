//! Harness for the end-to-end tests: starts the real `verifyd` binary on a free port with its own
//! directory and database (a fresh SQLite file, or a fresh PostgreSQL database), and reads the sim
//! carrier's outbox the way a person would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use verify_client::VerifyClient;

/// Defines, for each async test body `name(backend)`, the tests `name::sqlite` and
/// `name::postgres`, so every behaviour is checked on both databases.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await
            }
        }
    )+};
}

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the server's directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Path of a workspace binary (`verifyd`, `verifyctl`) of the profile the tests were built with.
/// `cargo test --workspace` builds both, because their packages have tests of their own.
pub fn binary(name: &str) -> PathBuf {
    let variable = format!("VERIFYD_TEST_BIN_{}", name.to_ascii_uppercase());
    if let Some(path) = std::env::var_os(&variable) {
        return PathBuf::from(path);
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target_dir().join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (scripts/test does), or set {variable}",
        path.display()
    );
    path
}

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("VERIFYD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A throwaway PostgreSQL database, dropped when this value is.
pub struct PostgresDatabase {
    name: String,
    url: String,
}

impl PostgresDatabase {
    /// Creates `verifyd_e2e_<random>`.
    pub async fn create() -> PostgresDatabase {
        let admin = postgres_admin_url();
        let name = format!("verifyd_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is needed for these tests (set VERIFYD_TEST_DATABASE_URL): {e}")
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut connection)
            .await
            .expect("create test database");
        let _ = connection.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        PostgresDatabase { name, url }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin = postgres_admin_url();
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee; use a small one of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut connection)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// Options for a test server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Extra TOML appended to the generated config (`[codes]`, `[[api_keys]]` ...).
    pub extra_config: String,
    /// Use this database URL instead of the backend's fresh one (to share a database).
    pub database_url: Option<String>,
    /// Use this directory instead of a new one (to restart on the same files).
    pub directory: Option<PathBuf>,
    /// Name of the outbox file in the directory.
    pub outbox_name: Option<String>,
    /// Extra environment variables of the process (carrier secrets named by `X_env`).
    pub env: Vec<(String, String)>,
}

/// A running `verifyd`.
pub struct TestServer {
    child: Option<Child>,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its working directory (database file, secret, outbox, log).
    pub directory: PathBuf,
    /// The sim carrier's outbox file.
    pub outbox: PathBuf,
    /// The database URL it uses.
    pub database_url: String,
    /// Where it serves carrier callbacks, when its config has `[callbacks] listen`.
    pub callbacks_address: Option<SocketAddr>,
    env: Vec<(String, String)>,
    _temp: Option<tempfile::TempDir>,
    _postgres: Option<PostgresDatabase>,
}

impl TestServer {
    /// Starts a server on `backend` with default options.
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_with(backend, ServerOptions::default()).await
    }

    /// Starts a server on `backend` with extra TOML appended to its generated config.
    pub async fn start_with_config(
        backend: Backend,
        extra_config: impl Into<String>,
    ) -> TestServer {
        TestServer::start_with(
            backend,
            ServerOptions {
                extra_config: extra_config.into(),
                ..ServerOptions::default()
            },
        )
        .await
    }

    /// Starts a server on `backend` with `options`.
    pub async fn start_with(backend: Backend, options: ServerOptions) -> TestServer {
        let (temp, directory) = match &options.directory {
            Some(directory) => (None, directory.clone()),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("verifyd-e2e-")
                    .tempdir()
                    .expect("temp dir");
                let path = temp.path().to_path_buf();
                (Some(temp), path)
            }
        };
        let (postgres, database_url) = match (&options.database_url, backend) {
            (Some(url), _) => (None, url.clone()),
            (None, Backend::Sqlite) => (
                None,
                format!("sqlite://{}", directory.join("verifyd.db").display()),
            ),
            (None, Backend::Postgres) => {
                let database = PostgresDatabase::create().await;
                let url = database.url().to_string();
                (Some(database), url)
            }
        };
        let outbox = directory.join(options.outbox_name.as_deref().unwrap_or("outbox.jsonl"));
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\ndata_dir = \"{}\"\nsim_outbox = \"{}\"\n{}\n",
            directory.display(),
            outbox.display(),
            options.extra_config
        );
        let config_path = directory.join(format!("verifyd-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&config_path, config).expect("write config");
        let mut server = TestServer {
            env: options.env.clone(),
            child: None,
            address: "127.0.0.1:0".parse().expect("address"),
            directory: directory.clone(),
            outbox,
            database_url,
            callbacks_address: None,
            _temp: temp,
            _postgres: postgres,
        };
        server.spawn(&config_path);
        server
    }

    fn spawn(&mut self, config_path: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.directory.join("verifyd.log"))
            .expect("log file");
        let mut child = Command::new(binary("verifyd"))
            .arg("--config")
            .arg(config_path)
            .current_dir(&self.directory)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info,verify_server=debug,sqlx=warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start verifyd");
        let stdout = child.stdout.take().expect("stdout piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(address) = line.strip_prefix("verifyd http on ") {
                    let _ = sender.send((false, address.to_string()));
                }
                if let Some(address) = line.strip_prefix("verifyd listening on ") {
                    let _ = sender.send((true, address.to_string()));
                }
            }
        });
        self.child = Some(child);
        self.callbacks_address = None;
        loop {
            match receiver.recv_timeout(Duration::from_secs(60)) {
                Ok((true, address)) => {
                    self.address = address.parse().expect("listen address");
                    break;
                }
                Ok((false, address)) => {
                    self.callbacks_address = Some(address.parse().expect("callbacks address"));
                }
                Err(_) => panic!("verifyd did not start; log:\n{}", self.log()),
            }
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("verifyd.log")).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A connected client.
    pub async fn client(&self) -> VerifyClient {
        VerifyClient::connect(self.url()).await.expect("connect")
    }

    /// Lines of the outbox file.
    pub fn outbox_lines(&self) -> Vec<serde_json::Value> {
        read_outbox(&self.outbox)
    }

    /// Waits for the outbox to hold `count` lines for `verification_id`; returns them.
    pub async fn wait_for_messages(
        &self,
        verification_id: &str,
        count: usize,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines: Vec<_> = self
                .outbox_lines()
                .into_iter()
                .filter(|line| line["verification_id"] == verification_id)
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} messages for {verification_id} reached the outbox; log:\n{}",
                lines.len(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The code last delivered for `verification_id`.
    pub async fn code_for(&self, verification_id: &str) -> String {
        let lines = self.wait_for_messages(verification_id, 1).await;
        lines
            .last()
            .and_then(|line| line["code"].as_str())
            .expect("outbox line has a code")
            .to_string()
    }

    /// Runs verifyctl against this server with `args` and returns what it printed, failing the
    /// test (with its output) when it does not succeed.
    pub fn verifyctl(&self, args: &[&str]) -> String {
        let output = Command::new(binary("verifyctl"))
            .arg("--addr")
            .arg(self.url())
            .args(args)
            .output()
            .expect("run verifyctl");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "verifyctl {args:?}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    }

    /// Sends the signal `name` (e.g. `HUP`) to the running server.
    pub fn signal(&self, name: &str) {
        send_signal(self.child.as_ref().expect("server running"), name);
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        send_signal(&child, "TERM");
        wait_with_timeout(&mut child, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("verifyd did not stop within 60 s; log:\n{}", self.log()))
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same directory and database.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let config = std::fs::read_dir(&self.directory)
            .expect("directory")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| path.extension().is_some_and(|e| e == "toml"))
            .expect("config file");
        self.spawn(&config);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- verifyd log ({}) ---\n{}",
                self.directory.display(),
                self.log()
            );
        }
        self.kill();
    }
}

/// Reads `events` until one of type `wanted` arrives, failing after 10 s or at the end of the
/// stream; returns every event read, the wanted one last.
pub async fn events_until<S>(
    events: &mut S,
    wanted: verify_client::proto::v1::EventType,
) -> Vec<verify_client::proto::v1::Event>
where
    S: tokio_stream::Stream<Item = Result<verify_client::proto::v1::Event, tonic::Status>> + Unpin,
{
    use tokio_stream::StreamExt;
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap_or_else(|_| panic!("no {wanted:?} event within 10 s; saw {seen:?}"))
            .expect("the event stream ended")
            .expect("an event");
        let done = event.r#type() == wanted;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// Parses a JSON-lines outbox; a missing file has no lines.
pub fn read_outbox(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("outbox lines are JSON"))
        .collect()
}

/// Sends a signal by name with `kill`.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits for a child up to `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tool the cross-language tests need: the variable `VERIFYD_TEST_<NAME>` or the copy that
/// `scripts/test --install-only` puts under `.tools/`.
pub fn tool(name: &str, installed_at: &str) -> PathBuf {
    let variable = format!("VERIFYD_TEST_{}", name.to_ascii_uppercase());
    if let Some(path) = std::env::var_os(&variable) {
        return PathBuf::from(path);
    }
    let path = workspace_root().join(installed_at);
    assert!(
        path.exists(),
        "{name} is missing: run `scripts/test` (it installs it into .tools/), or set {variable}"
    );
    path
}

/// Configuration for tests that verify many consecutive numbers under load without approving
/// them: traffic that the default limit per number prefix (100 an hour) and the pumping guard
/// refuse as SMS pumping, so that limit is raised and the guard switched off (every other
/// limit stays as it ships).
pub const MANY_NUMBERS: &str = "\n[[abuse.rate_limits.limits]]\nname = \"per-number-prefix\"\n\
    key = \"number_prefix\"\nmax = 1000000\nper = \"1h\"\n[abuse.pumping]\nlevel = \"off\"\n";

/// First and count of the numbers `unique_mobile` hands out: +44 7400 800000 to 998999. Tests
/// that name a number of their own pick it outside this range.
const UNIQUE_FIRST: u32 = 800_000;
const UNIQUE_COUNT: u32 = 199_000;

/// A valid GB mobile number (libphonenumber: +44 7400 xxxxxx are mobiles) that no other call
/// in this test process returns and no test names itself: numbers come from a counter (in a
/// range of their own, spread over it), starting at a random point so that test processes sharing a database
/// are unlikely to meet (each test has its own server and database unless it says otherwise).
pub fn unique_mobile() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        AtomicU32::new((uuid::Uuid::new_v4().as_u128() % u128::from(UNIQUE_COUNT)) as u32)
    });
    // Successive numbers 1,001 apart, each in another prefix of 1,000 numbers: a prefix gets
    // its next number 199 numbers from the last after 199 calls. People verifying their own
    // numbers look like that; a bot walking a range does not (see the pumping guard).
    let k = next.fetch_add(1, Ordering::Relaxed) % UNIQUE_COUNT;
    let n = UNIQUE_FIRST + (u64::from(k) * 1001 % u64::from(UNIQUE_COUNT)) as u32;
    format!("+447400{n:06}")
}

/// What a `RESOURCE_EXHAUSTED` refusal of abuse defense carries: its code, message, the delay
/// of its `RetryInfo` and the subject of its one `QuotaFailure` violation (whose description
/// is the message).
pub fn refusal(error: &verify_client::ClientError) -> (tonic::Code, String, Duration, String) {
    use tonic_types::StatusExt;
    let status = error.status().expect("a gRPC status");
    let details = status.get_error_details();
    let retry = details
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo with a delay");
    let quota = details.quota_failure().expect("a QuotaFailure");
    assert_eq!(quota.violations.len(), 1);
    assert_eq!(quota.violations[0].description, status.message());
    (
        status.code(),
        status.message().to_string(),
        retry,
        quota.violations[0].subject.clone(),
    )
}

/// The hash `verifyd hash-api-key` prints for `key`, computed by the binary itself.
pub fn api_key_hash(key: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(binary("verifyd"))
        .arg("hash-api-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run verifyd hash-api-key");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(key.as_bytes())
        .expect("write the key");
    let output = child.wait_with_output().expect("hash-api-key output");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// Configuration for operator tests: the HTTP listener on a free port, a service `shop`, an
/// admin key `ops` (`admin_key`) and a key `shop-backend` of `shop` (`shop_key`).
pub fn operator_config(admin_key: &str, shop_key: &str) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"

[[services]]
id = "shop"
friendly_name = "Shop"

[[api_keys]]
name = "ops"
sha256 = "{}"

[[api_keys]]
name = "shop-backend"
sha256 = "{}"
service = "shop"
"#,
        api_key_hash(admin_key),
        api_key_hash(shop_key)
    )
}
