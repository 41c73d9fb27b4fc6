//! OTLP trace export and W3C trace-context helpers.
//!
//! Export is on only when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! and non-empty. Spans go out in batches (the SDK's batch processor, on its own thread) as
//! OTLP/HTTP protobuf (`<endpoint>/v1/traces`, or the traces endpoint as given), through a blocking
//! HTTP client that runs on that thread, so no async runtime is involved in exporting. An endpoint
//! that cannot be parsed turns export off; a collector that does not answer drops the spans: both are
//! logged once (warn), and the service carries on.
//!
//! With export off, [`enabled`] is false and every helper here returns at once: callers check
//! [`enabled`] before creating spans on hot paths, so tracing costs one relaxed atomic load.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The most links a span gets from [`add_links`] (the SDK's default per-span limit).
pub const MAX_LINKS: usize = 128;

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Whether spans are exported. Check it before creating spans on a hot path.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Export settings, resolved from the standard `OTEL_*` variables.
#[derive(Debug, Clone)]
pub struct OtelSettings {
    /// The full URL spans are POSTed to (`…/v1/traces`); `None`: export off.
    pub traces_url: Option<String>,
    /// `service.name` of every span.
    pub service_name: String,
    pub sampler: Sampler,
    /// Problems found in the variables, logged (warn) once the subscriber is installed.
    pub warnings: Vec<String>,
}

impl OtelSettings {
    /// From the process environment. `service` names the service when `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(service: &str) -> Self {
        let var = |v: Result<String, std::env::VarError>| v.ok();
        let vars = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                var(std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                var(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")),
            ),
            ("OTEL_SERVICE_NAME", var(std::env::var("OTEL_SERVICE_NAME"))),
            (
                "OTEL_TRACES_SAMPLER",
                var(std::env::var("OTEL_TRACES_SAMPLER")),
            ),
            (
                "OTEL_TRACES_SAMPLER_ARG",
                var(std::env::var("OTEL_TRACES_SAMPLER_ARG")),
            ),
        ];
        Self::from_lookup(service, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.clone())
        })
    }

    /// From any source of variables (tests).
    pub fn from_lookup(service: &str, get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut warnings = Vec::new();
        let traces_url = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The per-signal variable is used as given; the general one gets the signal's path.
            (Some(url), _) => Some(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)),
            (None, Some(base)) => Some((
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            )),
            (None, None) => None,
        }
        .and_then(|(var, url)| match check_url(&url) {
            Ok(()) => {
                if url.contains(":4317") {
                    warnings.push(format!(
                        "{var}={url}: port 4317 is OTLP/gRPC; this service exports OTLP/HTTP \
                         (usually port 4318), so the collector will likely refuse the spans"
                    ));
                }
                Some(url)
            }
            Err(why) => {
                warnings.push(format!(
                    "{var}={url:?} is not usable ({why}); tracing stays off"
                ));
                None
            }
        });
        let service_name = get("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_owned());
        let sampler = sampler(
            get("OTEL_TRACES_SAMPLER").as_deref(),
            get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            &mut warnings,
        );
        Self {
            traces_url,
            service_name,
            sampler,
            warnings,
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    match parsed.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported by this build: use the collector's plain \
                        OTLP/HTTP port, or a local collector or sidecar"
                    .into(),
            )
        }
        _ => return Err("the URL must start with http://".into()),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// The standard sampler variables; anything malformed falls back to `parentbased_always_on`.
fn sampler(name: Option<&str>, arg: Option<&str>, warnings: &mut Vec<String>) -> Sampler {
    let mut ratio = || match arg.map(str::parse::<f64>) {
        Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
        other => {
            if other.is_some() {
                warnings.push(format!(
                    "OTEL_TRACES_SAMPLER_ARG={:?} is not a ratio between 0 and 1; using 1.0",
                    arg.unwrap_or_default()
                ));
            }
            1.0
        }
    };
    let always = || Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    match name {
        None | Some("parentbased_always_on") => always(),
        Some("always_on") => Sampler::AlwaysOn,
        Some("always_off") => Sampler::AlwaysOff,
        Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Some("traceidratio") => Sampler::TraceIdRatioBased(ratio()),
        Some("parentbased_traceidratio") => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio())))
        }
        Some(other) => {
            warnings.push(format!(
                "OTEL_TRACES_SAMPLER={other:?} is not a supported sampler; using parentbased_always_on"
            ));
            always()
        }
    }
}

/// Builds the tracer provider for `settings` (export must be on), or says why not.
pub(crate) fn provider(settings: &OtelSettings) -> Result<SdkTracerProvider, String> {
    let url = settings
        .traces_url
        .clone()
        .ok_or_else(|| "no endpoint".to_owned())?;
    let client = BlockingClient::new(url.clone())?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(settings.sampler.clone())
        .with_resource(
            Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}

/// The tracing layer that turns spans into OpenTelemetry spans of `provider`, and export on.
pub(crate) fn install<S>(
    provider: SdkTracerProvider,
    scope: &'static str,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let tracer = provider.tracer(scope);
    if let Ok(mut slot) = PROVIDER.lock() {
        *slot = Some(provider);
    }
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
}

pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// Exports every finished span now (blocks until the collector answered or gave up).
pub fn flush() {
    let provider = PROVIDER.lock().ok().and_then(|p| p.clone());
    if let Some(p) = provider {
        if let Err(e) = p.force_flush() {
            tracing::debug!(error = %e, "flushing spans failed");
        }
    }
}

/// Exports what is left and stops exporting. Call once, as the process ends; blocks for at most a few
/// seconds (an unreachable collector is given up on).
pub fn shutdown() {
    let provider = PROVIDER.lock().ok().and_then(|mut p| p.take());
    if let Some(p) = provider {
        set_enabled(false);
        if let Err(e) = p.shutdown() {
            tracing::debug!(error = %e, "span exporter shutdown failed");
        }
    }
}

/// The W3C `traceparent` of a span context: `00-<trace id>-<span id>-<flags>`.
pub fn format_traceparent(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}

/// Parses a W3C `traceparent` (version `00`) into a remote span context; `None` for anything else.
pub fn parse_traceparent(tp: &str) -> Option<SpanContext> {
    let mut parts = tp.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !(hex(trace, 32) && hex(span, 16) && hex(flags, 2)) {
        return None;
    }
    if trace.bytes().any(|b| b.is_ascii_uppercase()) || span.bytes().any(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let cx = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    cx.is_valid().then_some(cx)
}

/// The `traceparent` of `span`, when export is on and the span is sampled.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| format_traceparent(&sc))
}

/// The `traceparent` of the current span, when export is on and the span is sampled.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Renames `span` as exported (e.g. after the route that serves a request is known). Does nothing when
/// export is off.
pub fn set_span_name(span: &tracing::Span, name: String) {
    if enabled() && !span.is_disabled() {
        span.context().span().update_name(name);
    }
}

/// Makes the span described by `traceparent` the parent of `span`, which must not have been entered
/// yet. Returns whether it did (false when export is off or `traceparent` is malformed).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) -> bool {
    if !enabled() {
        return false;
    }
    let Some(sc) = parse_traceparent(traceparent) else {
        return false;
    };
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    span.set_parent(cx).is_ok()
}

/// Links `span` to the spans described by `traceparents` (malformed ones skipped, duplicates once, at
/// most [`MAX_LINKS`]). Returns how many links were added.
pub fn add_links<'a>(
    span: &tracing::Span,
    traceparents: impl IntoIterator<Item = &'a str>,
) -> usize {
    if !enabled() || span.is_disabled() {
        return 0;
    }
    let mut seen = std::collections::HashSet::new();
    for tp in traceparents {
        if seen.len() >= MAX_LINKS {
            break;
        }
        if let Some(sc) = parse_traceparent(tp) {
            if seen.insert((sc.trace_id(), sc.span_id())) {
                span.add_link(sc);
            }
        }
    }
    seen.len()
}

/// OTLP/HTTP requests with a blocking client, on the batch processor's own thread. A failure is logged
/// once (warn) until an export succeeds again.
#[derive(Debug)]
struct BlockingClient {
    inner: reqwest::blocking::Client,
    url: String,
    failing: AtomicBool,
}

impl BlockingClient {
    fn new(url: String) -> Result<Self, String> {
        // reqwest's blocking client starts a runtime of its own, which must not happen on a thread
        // that is inside tokio (init runs inside `#[tokio::main]`).
        let inner = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
        })
        .join()
        .map_err(|_| "building the HTTP client panicked".to_owned())?
        .map_err(|e| e.to_string())?;
        Ok(Self {
            inner,
            url,
            failing: AtomicBool::new(false),
        })
    }

    fn failed(&self, why: &dyn std::fmt::Display) {
        if !self.failing.swap(true, Relaxed) {
            tracing::warn!(endpoint = %self.url, error = %why, "cannot export spans to the OTLP collector; dropping them until it answers");
        }
    }

    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request: reqwest::blocking::Request = request.try_into()?;
        let response = self.inner.execute(request)?;
        let status = response.status();
        let body = response.bytes()?;
        Ok(Response::builder().status(status).body(body)?)
    }
}

#[async_trait::async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let result = self.send(request);
        match &result {
            Ok(r) if r.status().is_success() => {
                if self.failing.swap(false, Relaxed) {
                    tracing::info!(endpoint = %self.url, "the OTLP collector accepts spans again");
                }
            }
            Ok(r) => self.failed(&format_args!("HTTP {}", r.status())),
            Err(e) => self.failed(e),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> OtelSettings {
        OtelSettings::from_lookup("chat-test", |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn no_endpoint_or_an_empty_one_means_off() {
        assert!(settings(&[]).traces_url.is_none());
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]);
        assert!(s.traces_url.is_none());
        assert!(s.warnings.is_empty());
        assert_eq!(s.service_name, "chat-test");
    }

    #[test]
    fn endpoints_resolve_as_the_specification_says() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            s.traces_url.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:9999/x"),
            ("OTEL_SERVICE_NAME", "api-eu"),
        ]);
        assert_eq!(s.traces_url.as_deref(), Some("http://other:9999/x"));
        assert_eq!(s.service_name, "api-eu");
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn malformed_settings_warn_and_fall_back() {
        for bad in [
            "collector:4318",
            "http://",
            "ftp://x",
            "https://collector:4318",
            "http://a b",
        ] {
            let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]);
            assert!(s.traces_url.is_none(), "{bad}");
            assert_eq!(s.warnings.len(), 1, "{bad}: {:?}", s.warnings);
        }
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]);
        assert!(s.traces_url.is_some());
        assert!(s.warnings[0].contains("gRPC"), "{:?}", s.warnings);
        let s = settings(&[("OTEL_TRACES_SAMPLER", "sometimes")]);
        assert_eq!(s.warnings.len(), 1);
        assert!(matches!(s.sampler, Sampler::ParentBased(_)));
        let s = settings(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "5"),
        ]);
        assert_eq!(s.warnings.len(), 1);
        assert!(matches!(s.sampler, Sampler::TraceIdRatioBased(r) if r == 1.0));
        let s = settings(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn traceparents_round_trip_and_garbage_is_refused() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let cx = parse_traceparent(tp).expect("valid");
        assert!(cx.is_sampled() && cx.is_remote());
        assert_eq!(format_traceparent(&cx), tp);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-0af7651916cd43dd8448eb211c8031\"c-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    /// Runs a future that never waits (the client blocks instead) to completion.
    fn now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the client does not wait"),
        }
    }

    fn request(url: &str) -> Request<Bytes> {
        Request::post(url)
            .header("content-type", "application/x-protobuf")
            .body(Bytes::from_static(b""))
            .expect("request")
    }

    #[test]
    fn an_unreachable_collector_is_reported_once_until_it_answers() {
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}/v1/traces", closed.local_addr().expect("addr"));
        drop(closed);
        let client = BlockingClient::new(dead.clone()).expect("client");
        assert!(now(client.send_bytes(request(&dead))).is_err());
        assert!(client.failing.load(Relaxed));
        assert!(now(client.send_bytes(request(&dead))).is_err());
        assert!(
            client.failing.load(Relaxed),
            "still failing, not logged again"
        );

        // A collector that answers: the failure is over.
        let up = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/v1/traces", up.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (mut s, _) = up.accept().expect("accept");
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        });
        let res = now(client.send_bytes(request(&url))).expect("answered");
        assert!(res.status().is_success());
        assert!(!client.failing.load(Relaxed));
        server.join().expect("server");
    }

    #[test]
    fn helpers_do_nothing_while_export_is_off() {
        let span = tracing::info_span!("x");
        assert_eq!(current_traceparent(), None);
        assert!(!set_parent_from_traceparent(
            &span,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ));
        assert_eq!(add_links(&span, ["garbage"]), 0);
    }
}
