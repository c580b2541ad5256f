//! TLS and mutual TLS through the real binary, with certificates made at test time: verifyctl,
//! grpcurl and the Rust client over TLS; a client without a certificate refused under mutual
//! TLS; and certificates replaced while a connection is open, picked up for new connections
//! (on the file change, and on SIGHUP) without dropping the open one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use verify_client::{TlsOptions, VerifyClient};
use verify_e2e::{Backend, TestServer, binary, on_both_backends, tool};

on_both_backends!(
    tls_and_mutual_tls_with_real_clients,
    certificates_reload_without_dropping
);

/// A CA and what it signs, written as PEM files into a directory.
struct Pki {
    dir: PathBuf,
    ca_key: KeyPair,
    ca_params: CertificateParams,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = ca_params.clone().self_signed(&ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_key,
            ca_params,
        }
    }

    fn ca(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-ca.pem"))
    }

    /// A leaf certificate for `localhost` and 127.0.0.1, as `{file}.pem` and `{file}.key`.
    fn leaf(&self, file: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        // Written to a new file and renamed, as tools that rotate certificates do.
        let write = |path: &Path, text: String| {
            let temporary = path.with_extension("tmp");
            std::fs::write(&temporary, text).unwrap();
            std::fs::rename(&temporary, path).unwrap();
        };
        write(&key_path, key.serialize_pem());
        write(&cert_path, cert.pem());
        (cert_path, key_path)
    }
}

fn tls_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let mut text = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    if let Some(ca) = client_ca {
        text.push_str(&format!("client_ca = \"{}\"\n", ca.display()));
    }
    text
}

fn options(ca: &Path, client: Option<(&Path, &Path)>) -> TlsOptions {
    TlsOptions {
        ca_pem: Some(std::fs::read(ca).unwrap()),
        cert_pem: client.map(|(cert, _)| std::fs::read(cert).unwrap()),
        key_pem: client.map(|(_, key)| std::fs::read(key).unwrap()),
        domain: None,
    }
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("run client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn classify_works(client: &VerifyClient) -> bool {
    client.classify("+14155550123", None).await.is_ok()
}

async fn tls_and_mutual_tls_with_real_clients(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let servers = Pki::new(dir.path(), "servers");
    let clients = Pki::new(dir.path(), "clients");
    let (cert, key) = servers.leaf("server");
    let (client_cert, client_key) = clients.leaf("client");
    let grpcurl = tool("grpcurl", ".tools/bin/grpcurl");

    // TLS: verifyctl, grpcurl and the Rust client trust the CA; plain text is refused.
    let server = TestServer::start_with_config(
        backend,
        format!(
            "{}[callbacks]\nlisten = \"127.0.0.1:0\"\n",
            tls_config(&cert, &key, None)
        ),
    )
    .await;
    // The HTTP listener speaks TLS too.
    let callbacks = server.callbacks_address.expect("callbacks listen");
    let (ok, text) = run(Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(servers.ca("servers"))
        .arg(format!(
            "https://localhost:{}/callbacks/nobody",
            callbacks.port()
        )));
    assert!(ok && text.contains("no carrier of that name"), "{text}");
    let (ok, _) = run(Command::new("curl").args([
        "-sS",
        &format!("http://127.0.0.1:{}/callbacks/nobody", callbacks.port()),
    ]));
    assert!(!ok, "the HTTP listener answered in plain text");
    let port = server.address.port();
    let (ok, text) = run(Command::new(binary("verifyctl"))
        .args(["--addr", &format!("https://localhost:{port}")])
        .arg("--ca")
        .arg(servers.ca("servers"))
        .args(["classify", "+14155550123"]));
    assert!(ok && text.contains("mobile"), "{text}");
    let (ok, text) = run(Command::new(&grpcurl)
        .arg("-cacert")
        .arg(servers.ca("servers"))
        .args([&format!("localhost:{port}"), "list"]));
    assert!(ok && text.contains("verify.v1.VerifyService"), "{text}");
    let (ok, text) = run(Command::new(&grpcurl)
        .arg("-cacert")
        .arg(servers.ca("servers"))
        .args(["-d", r#"{"number":"+14155550123"}"#])
        .args([
            &format!("127.0.0.1:{port}"),
            "verify.v1.VerifyService/Classify",
        ]));
    assert!(ok && text.contains("\"valid\": true"), "{text}");
    let (ok, text) =
        run(Command::new(&grpcurl).args(["-plaintext", &format!("127.0.0.1:{port}"), "list"]));
    assert!(!ok, "plain text was served: {text}");
    // A CA that did not sign the server's certificate is not trusted.
    let (ok, _) = run(Command::new(binary("verifyctl"))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .arg("--ca")
        .arg(clients.ca("clients"))
        .args(["classify", "+14155550123"]));
    assert!(!ok, "a server certificate from another CA was trusted");
    let client = VerifyClient::connect_tls(
        format!("https://localhost:{port}"),
        options(&servers.ca("servers"), None),
    )
    .await
    .unwrap();
    assert!(classify_works(&client).await);
    assert!(server.log().contains("tls=\"on\""), "{}", server.log());
    drop(server);

    // Mutual TLS: a client certificate from the client CA is required.
    let server = TestServer::start_with_config(
        backend,
        tls_config(&cert, &key, Some(&clients.ca("clients"))),
    )
    .await;
    let port = server.address.port();
    let (ok, text) = run(Command::new(binary("verifyctl"))
        .args(["--addr", &format!("localhost:{port}")])
        .arg("--ca")
        .arg(servers.ca("servers"))
        .arg("--cert")
        .arg(&client_cert)
        .arg("--key")
        .arg(&client_key)
        .args(["--json", "classify", "+14155550123"]));
    assert!(ok && text.contains("LINE_TYPE_"), "{text}");
    let (ok, text) = run(Command::new(&grpcurl)
        .arg("-cacert")
        .arg(servers.ca("servers"))
        .arg("-cert")
        .arg(&client_cert)
        .arg("-key")
        .arg(&client_key)
        .args([&format!("localhost:{port}"), "list"]));
    assert!(ok && text.contains("verify.v1.VerifyService"), "{text}");
    let (ok, text) = run(Command::new(&grpcurl)
        .arg("-cacert")
        .arg(servers.ca("servers"))
        .args([&format!("localhost:{port}"), "list"]));
    assert!(!ok, "served without a client certificate: {text}");
    let (ok, _) = run(Command::new(binary("verifyctl"))
        .args(["--addr", &format!("localhost:{port}")])
        .arg("--ca")
        .arg(servers.ca("servers"))
        .args(["classify", "+14155550123"]));
    assert!(!ok, "verifyctl was served without a client certificate");
    // A certificate the client CA did not sign is refused too.
    let (stranger_cert, stranger_key) = servers.leaf("stranger");
    let stranger = VerifyClient::connect_tls(
        format!("https://localhost:{port}"),
        options(
            &servers.ca("servers"),
            Some((&stranger_cert, &stranger_key)),
        ),
    )
    .await;
    let refused = match stranger {
        Ok(client) => !classify_works(&client).await,
        Err(_) => true,
    };
    assert!(refused, "a client certificate from another CA was accepted");
    assert!(
        server.log().contains("mutual"),
        "the log says mutual TLS is on"
    );
}

async fn certificates_reload_without_dropping(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::new(dir.path(), "first");
    let (cert, key) = first.leaf("server");
    let server = TestServer::start_with_config(backend, tls_config(&cert, &key, None)).await;
    let url = format!("https://localhost:{}", server.address.port());
    let open = VerifyClient::connect_tls(url.clone(), options(&first.ca("first"), None))
        .await
        .unwrap();
    assert!(classify_works(&open).await);

    // New certificate files from another CA; new connections get them within a second or so.
    let mut ca_in_use = "first";
    for (round, by_signal) in [("second", false), ("third", true)] {
        let next = Pki::new(dir.path(), round);
        next.leaf("server");
        if by_signal {
            server.signal("HUP");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let connected =
                VerifyClient::connect_tls(url.clone(), options(&next.ca(round), None)).await;
            if let Ok(client) = connected
                && classify_works(&client).await
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the {round} certificate was not picked up; log:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Trusting only the CA before now fails for a new connection ...
        let stale = VerifyClient::connect_tls(
            url.clone(),
            options(&dir.path().join(format!("{ca_in_use}-ca.pem")), None),
        )
        .await;
        let stale_works = match stale {
            Ok(client) => classify_works(&client).await,
            Err(_) => false,
        };
        assert!(!stale_works, "the replaced certificate is still served");
        // ... while the connection opened with the first certificate still serves.
        assert!(
            classify_works(&open).await,
            "the open connection was dropped"
        );
        ca_in_use = round;
    }
    let log = server.log();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    // A broken file keeps the last good certificate.
    std::fs::write(&key, "not a key").unwrap();
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        server
            .log()
            .contains("the previous TLS certificate stays in use")
    );
    let still = VerifyClient::connect_tls(url, options(&dir.path().join("third-ca.pem"), None))
        .await
        .unwrap();
    assert!(classify_works(&still).await);
}
