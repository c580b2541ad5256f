//! OpenTelemetry traces through the real binary, received by an OTLP collector built here on
//! the official OTLP protobufs: a Verify that carries a W3C `traceparent` continues the
//! caller's trace, and the send the dispatcher makes later, the carrier's call and the receipt
//! are its descendants.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use verify_client::proto::v1::verify_service_client::VerifyServiceClient;
use verify_client::proto::v1::{CheckRequest, VerifyRequest, check_request};
use verify_e2e::{Backend, TestServer, on_both_backends, unique_mobile};

on_both_backends!(a_verify_and_its_later_send_are_one_trace,);

/// The caller's trace and span (W3C ids, hex).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// Spans received, with the `service.name` of their resource.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(name)) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
}

async fn a_verify_and_its_later_send_are_one_trace(backend: Backend) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let serving = collector.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(serving))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let server = TestServer::start_with_config(
        backend,
        format!(
            "[telemetry]\notlp_endpoint = \"http://{address}\"\nservice_name = \"verifyd-test\"\nexport_interval_ms = 200\n"
        ),
    )
    .await;

    let mut raw = VerifyServiceClient::connect(server.url()).await.unwrap();
    let mut request = Request::new(VerifyRequest {
        to: unique_mobile(),
        ..VerifyRequest::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    let verification = raw
        .verify(request)
        .await
        .unwrap()
        .into_inner()
        .verification
        .unwrap();
    let code = server.code_for(&verification.id).await;
    raw.check(CheckRequest {
        target: Some(check_request::Target::VerificationId(
            verification.id.clone(),
        )),
        code,
        ..CheckRequest::default()
    })
    .await
    .unwrap();

    // The rpc, the send, the carrier's call and the receipt all reach the collector.
    let started = Instant::now();
    let spans = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let ours: Vec<&(String, Span)> = spans
            .iter()
            .filter(|(_, span)| hex(&span.trace_id) == TRACE_ID)
            .collect();
        let names: Vec<&str> = ours.iter().map(|(_, s)| s.name.as_str()).collect();
        if ["Verify", "send", "carrier submit", "receipt"]
            .iter()
            .all(|name| names.contains(name))
            && spans.iter().any(|(_, s)| s.name == "Check")
        {
            break spans;
        }
        let all: Vec<(String, String, String)> = spans
            .iter()
            .map(|(_, s)| (s.name.clone(), hex(&s.trace_id), hex(&s.parent_span_id)))
            .collect();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "spans of the trace so far: {names:?}; all: {all:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |name: &str| {
        spans
            .iter()
            .find(|(_, span)| span.name == name && hex(&span.trace_id) == TRACE_ID)
            .unwrap_or_else(|| panic!("no {name} span in the trace"))
    };
    let (service, verify) = find("Verify");
    assert_eq!(service, "verifyd-test");
    assert_eq!(
        hex(&verify.parent_span_id),
        CALLER_SPAN_ID,
        "the caller's span is its parent"
    );
    assert_eq!(
        attribute(verify, "rpc.grpc.status_code"),
        Some(Value::IntValue(0))
    );
    let (_, send) = find("send");
    assert_eq!(
        hex(&send.parent_span_id),
        hex(&verify.span_id),
        "the Verify is the parent of the send the dispatcher made later"
    );
    let (_, submit) = find("carrier submit");
    assert_eq!(hex(&submit.parent_span_id), hex(&send.span_id));
    assert_eq!(
        attribute(submit, "carrier"),
        Some(Value::StringValue("sim".into()))
    );
    let (_, receipt) = find("receipt");
    assert_eq!(hex(&receipt.parent_span_id), hex(&verify.span_id));
    // A call without a traceparent starts a trace of its own.
    let (_, check) = spans.iter().find(|(_, s)| s.name == "Check").unwrap();
    assert_ne!(hex(&check.trace_id), TRACE_ID);
    assert!(check.parent_span_id.is_empty());
}
