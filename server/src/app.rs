//! Assembles and runs one verifyd: storage, carriers, dispatcher, receipt recorder and the gRPC
//! server with health, reflection and API keys, and shuts them down in order.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use verify_carrier::ReceiptSink;
use verify_policy::routing::{BreakerLayer, CircuitBreakers, SystemClock};

use crate::auth::ApiKeyCheck;
use crate::carriers::{CarrierSet, register_carriers};
use crate::codes::{CodeBook, load_or_create_secret};
use crate::config::{Config, redact_url_password};
use crate::decide::Decider;
use crate::dispatcher::{Dispatcher, record_receipts};
use crate::grpc::VerifyApi;
use crate::notify::NotifyPolicy;
use crate::proto::verify_service_server::VerifyServiceServer;
use crate::services::ServiceDirectory;
use crate::stats::ConversionRefresher;
use crate::store::SqlStore;
use crate::tls::{Protocol, ReloadingTls, TlsIncoming};
use crate::usecases::UseCases;
use crate::webhooks::WebhookSender;
use verify_policy::abuse::AbuseDefense;
use verify_policy::rules::RuleSet;

/// Time in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Longest wait for receipts still in flight at shutdown.
const RECEIPT_DRAIN_TIMEOUT: Duration = Duration::from_secs(35);

/// Runs verifyd with `config` until `shutdown` completes, then stops gracefully: in-flight RPCs
/// finish, event streams end, the dispatcher stops claiming and finishes what it claimed,
/// carriers flush their receipts, and the database is closed.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    serve(config, listener, shutdown).await
}

/// Like [`run`], on a listener the caller bound (benchmarks and embedding use port 0).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    verify_policy::classify::warm_up();
    if let Some(start) = config.debug.clock_start_ms().map_err(|e| e.to_string())? {
        crate::clock::start_at(start);
        tracing::warn!(
            clock_start = config.debug.clock_start.as_deref().unwrap_or_default(),
            "debug.clock_start: the server's clock does not show the real time"
        );
    }
    // The database first: a start refused for it leaves no new secret file behind.
    let store = Arc::new(SqlStore::connect(&config.database_url).await.map_err(|e| {
        format!(
            "database {}: {e}",
            redact_url_password(&config.database_url)
        )
    })?);
    let secret = load_or_create_secret(config.secret.as_deref(), &config.data_dir)?;
    let codes = CodeBook::new(secret);
    let same_secret = store
        .secret_fingerprint_matches(&codes.fingerprint())
        .await
        .map_err(|e| e.to_string())?;
    if !same_secret {
        return Err(
            "this database was first used with another code secret: every verifyd sharing a \
             database needs the same `secret` (or the same data_dir/verifyd-secret.key); with \
             another secret, codes already sent would not check"
                .into(),
        );
    }
    let callback_listener = match config.http.listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|e| format!("http.listen: cannot listen on {address}: {e}"))?,
        ),
        None => None,
    };
    let callback_address = match &callback_listener {
        Some(listener) => Some(listener.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let tls = match &config.tls {
        Some(settings) => Some(ReloadingTls::load(settings)?),
        None => None,
    };
    let callback_base = config.callbacks.base_url(callback_address, tls.is_some());
    let (receipts, receipt_stream) =
        ReceiptSink::channel(crate::dispatcher::RECEIPT_CHANNEL_CAPACITY);
    // Every carrier sits behind its routes' circuit breakers: an open breaker refuses for now
    // without calling the carrier, so failover moves on at once.
    let breakers = Arc::new(CircuitBreakers::new(config.routes.breaker.clone()));
    let carriers = Arc::new(
        CarrierSet::build(
            &register_carriers(),
            &config.carriers,
            &receipts,
            callback_base.as_deref(),
        )
        .map_err(|e| e.to_string())?
        .layered(|carrier| {
            Arc::new(BreakerLayer::new(
                carrier,
                Arc::clone(&breakers),
                Arc::new(SystemClock),
            ))
        }),
    );
    let services = ServiceDirectory::load(
        &config.services,
        config.codes.service_defaults(),
        Arc::clone(&store),
    )
    .await?;
    let notify = Arc::new(NotifyPolicy::new(
        RuleSet::from_config(&config.policy.rules).map_err(|e| e.to_string())?,
        config.programs.clone(),
    ));
    // Measured conversion for `adaptive`, loaded now and then in the background.
    let conversion = ConversionRefresher::start(Arc::clone(&store), &config.fallback).await;
    let decider = Arc::new(Decider::new(
        config.routes.clone(),
        config.fallback.clone(),
        Arc::clone(&carriers),
        Arc::clone(&breakers),
        conversion.stats(),
    )?);
    drop(receipts);
    // Receipts of messages sent before a restart may arrive as soon as carriers start, so the
    // recorder and the callback endpoint run first.
    let receipt_recorder = tokio::spawn(record_receipts(Arc::clone(&store), receipt_stream));
    let (callbacks_stop, callbacks_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(address) = callback_address
        && tls.is_none()
    {
        warn_if_exposed(address, "http.listen");
    }
    let api_keys = ApiKeyCheck::new(&config.api_keys);
    let use_cases_slot = Arc::new(std::sync::OnceLock::new());
    let callback_server = match (callback_listener, callback_address) {
        (Some(listener), Some(http_address)) => {
            let operator = crate::web::Operator {
                keys: api_keys.clone(),
                address: http_address,
                sources: crate::metrics::ScrapeSources {
                    store: Arc::clone(&store),
                    breakers: Arc::clone(&breakers),
                },
                use_cases: Arc::clone(&use_cases_slot),
            };
            let routes = crate::web::router(carriers.callback_targets(), operator);
            let stop = async {
                let _ = callbacks_stopped.await;
            };
            Some(match &tls {
                Some(tls) => {
                    let incoming = TlsIncoming::new(listener, Arc::clone(tls), Protocol::Http)
                        .map_err(|e| format!("http: {e}"))?;
                    tokio::spawn(async move {
                        let served = axum::serve(incoming, routes)
                            .with_graceful_shutdown(stop)
                            .await;
                        if let Err(error) = served {
                            tracing::error!(%error, "HTTP listener failed");
                        }
                    })
                }
                None => tokio::spawn(async move {
                    let served = axum::serve(listener, routes)
                        .with_graceful_shutdown(stop)
                        .await;
                    if let Err(error) = served {
                        tracing::error!(%error, "HTTP listener failed");
                    }
                }),
            })
        }
        _ => None,
    };
    if let (Some(address), Some(base)) = (callback_address, &callback_base) {
        tracing::info!(listen = %address, public_url = %base, "HTTP listener: carrier callbacks at /callbacks/{{carrier}}, metrics at /metrics, the dashboard at /dashboard");
        println!("verifyd http on {address}");
    }
    carriers.start().await.map_err(|e| e.to_string())?;

    let address = listener.local_addr().map_err(|e| e.to_string())?;

    let (stopping, stopping_signal) = watch::channel(false);
    let dispatcher = tokio::spawn(
        Dispatcher::new(
            Arc::clone(&store),
            Arc::clone(&carriers),
            Arc::clone(&decider),
            Arc::clone(&notify),
            codes.clone(),
            Arc::clone(&services),
            config.dispatcher.clone(),
        )
        .run(stopping_signal.clone()),
    );

    for (key, service) in api_keys.services() {
        if services.find(&service).await.ok().flatten().is_none() {
            tracing::warn!(api_key = %key, service = %service, "this API key names a service that does not exist (yet): its requests are NOT_FOUND until the service is created");
        }
    }
    services.follow(stopping_signal.clone());
    let webhook_sender =
        WebhookSender::new(Arc::clone(&store), Arc::clone(&services), &config.webhooks)?;
    webhook_sender
        .prepare()
        .await
        .map_err(|e| format!("webhooks: {e}"))?;
    let mut webhooks = webhook_sender.start(stopping_signal.clone());
    // Conversion statistics follow the event log in the background.
    let mut rollup = crate::rollup::start(
        Arc::clone(&store),
        config.routes.clone(),
        stopping_signal.clone(),
    );
    if !api_keys.is_enabled() {
        tracing::warn!(
            listen = %address,
            "no api_keys configured: serving without authentication on a loopback address only"
        );
    }
    let use_cases = Arc::new(UseCases::new(
        Arc::clone(&store),
        codes,
        Arc::clone(&services),
        Arc::clone(&decider),
        notify,
        Arc::new(AbuseDefense::from_config(&config.abuse)?),
        stopping_signal,
    ));
    let _ = use_cases_slot.set(Arc::downgrade(&use_cases));
    let campaign_sender = tokio::spawn(
        crate::campaign_sender::CampaignSender::new(
            Arc::clone(&store),
            Arc::clone(&use_cases),
            &carriers,
        )
        .run(stopping.subscribe()),
    );
    let api = VerifyApi::new(Arc::clone(&use_cases));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<VerifyServiceServer<VerifyApi>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;

    tracing::info!(
        listen = %address,
        database = %redact_url_password(&config.database_url),
        carriers = config.carriers.len(),
        tls = match &tls {
            Some(tls) if tls.is_mutual() => "mutual (client certificates required)",
            Some(_) => "on",
            None => "off",
        },
        "verifyd ready"
    );
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("verifyd listening on {address}");

    let health_on_stop = health_reporter.clone();
    let stopping_for_server = stopping.clone();
    let router = Server::builder()
        .layer(crate::access::AccessLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(VerifyServiceServer::with_interceptor(api, api_keys));
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        health_on_stop
            .set_not_serving::<VerifyServiceServer<VerifyApi>>()
            .await;
        // Ends event streams (so the server can finish) and stops the dispatcher claiming.
        let _ = stopping_for_server.send(true);
    };
    let server: std::pin::Pin<
        Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match &tls {
        Some(tls) => {
            tls.watch(stopping.subscribe());
            let incoming = TlsIncoming::new(listener, Arc::clone(tls), Protocol::Grpc)
                .map_err(|e| e.to_string())?;
            Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
        }
        None => {
            warn_if_exposed(address, "listen");
            // No Nagle delay: a response written in two parts must not wait for the peer's ACK.
            Box::pin(
                router.serve_with_incoming_shutdown(
                    TcpIncoming::from(listener)
                        .with_nodelay(Some(true))
                        .with_keepalive(Some(Duration::from_secs(60))),
                    signal,
                ),
            )
        }
    };
    // In-flight requests get a grace period after the signal; then the server is dropped.
    let mut stopped = stopping.subscribe();
    let served = tokio::select! {
        served = server => served,
        _ = async {
            let _ = stopped.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period; closing them");
            Ok(())
        }
    };
    let _ = stopping.send(true);
    // The requests have finished: their rate-limit counts are written, and the use cases go
    // (they hold the decider, whose carriers the receipts below wait for).
    use_cases.write_pending_counts().await;
    if let Err(error) = campaign_sender.await {
        tracing::error!(%error, "campaign sender task failed");
    }
    drop(use_cases);

    if let Err(error) = dispatcher.await {
        tracing::error!(%error, "dispatcher task failed");
    }
    // A webhook request still out is sent again by the next server (at least once): waiting
    // for a slow receiver is not needed.
    if tokio::time::timeout(Duration::from_secs(5), &mut webhooks)
        .await
        .is_err()
    {
        tracing::info!(
            "webhook requests still out after 5 s; they are sent again at the next start"
        );
        webhooks.abort();
    }
    // Carriers wait for the receipts of what they accepted, some of which come as callbacks,
    // so the callback endpoint stops only after them.
    carriers.shutdown().await;
    drop(carriers);
    drop(decider);
    conversion.stop().await;
    let _ = callbacks_stop.send(());
    if let Some(mut callback_server) = callback_server
        && tokio::time::timeout(Duration::from_secs(5), &mut callback_server)
            .await
            .is_err()
    {
        tracing::warn!("callback endpoint still busy after 5 s; closing it");
        callback_server.abort();
    }
    match tokio::time::timeout(RECEIPT_DRAIN_TIMEOUT, receipt_recorder).await {
        Ok(_) => {}
        Err(_) => tracing::warn!("receipts still arriving after shutdown; later ones are lost"),
    }
    // A batch being rolled up commits whole or not at all; the next start reads it again.
    if tokio::time::timeout(Duration::from_secs(5), &mut rollup)
        .await
        .is_err()
    {
        rollup.abort();
    }
    store.close().await;
    tracing::info!("verifyd stopped");
    served.map_err(|e| format!("gRPC server: {e}"))
}

/// Warns that a listener reachable from other hosts speaks plain text, and what that risks.
fn warn_if_exposed(address: std::net::SocketAddr, setting: &str) {
    if !address.ip().is_loopback() {
        tracing::warn!(
            listen = %address,
            "{setting} is not a loopback address and [tls] is not set: API keys, phone numbers and \
             codes cross the network in clear text, where anyone on the path can read them or use \
             the keys; set [tls] cert and key (or serve behind a TLS proxy on this host)"
        );
    }
}
