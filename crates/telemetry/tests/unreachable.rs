//! A collector that is not there never stops a service: spans are dropped, the process goes on, and
//! flushing and shutting down return. (A test binary of its own: the subscriber is global.)

use chat_config::LogFormat;
use std::time::{Duration, Instant};

#[test]
fn an_unreachable_collector_costs_the_service_nothing_but_dropped_spans() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let settings = chat_telemetry::OtelSettings::from_lookup("chat-test", |k| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(format!("http://127.0.0.1:{port}")),
        // Malformed: logged, replaced by the default.
        "OTEL_TRACES_SAMPLER" => Some("sometimes".into()),
        _ => None,
    });
    assert_eq!(settings.warnings.len(), 1, "{:?}", settings.warnings);
    chat_telemetry::init_with("chat-test", LogFormat::Text, &settings);
    assert!(chat_telemetry::enabled());

    let started = Instant::now();
    for i in 0..100 {
        // Our crates' spans are the exported ones.
        let span = tracing::info_span!(target: "chat_test", "chat.test", i);
        let _in = span.enter();
        let tp = chat_telemetry::current_traceparent().expect("sampled");
        assert!(chat_telemetry::parse_traceparent(&tp).is_some(), "{tp}");
    }
    chat_telemetry::flush();
    chat_telemetry::flush();
    chat_telemetry::shutdown();
    assert!(!chat_telemetry::enabled());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Shutting down twice is harmless.
    chat_telemetry::shutdown();
}
