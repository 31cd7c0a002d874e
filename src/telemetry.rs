//! Logging and tracing for the server: log lines to stderr through a writer thread (plain text,
//! or JSON with `HOOKBRIDGE_LOG_FORMAT=json`; level from `HOOKBRIDGE_LOG`), and with the `otlp`
//! feature, spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

/// Logs go to stderr from a thread of their own, in batches; the guard flushes them when dropped.
///
/// At the default `info` level every event logs a line. Written to stderr by the request itself,
/// that line cost ~4 CPU-µs per event (a quarter of a blackhole request, BENCHMARKS.md), one
/// `write` each, and a slow reader of stderr (a container runtime's pipe) stalled the runtime
/// thread. Lossless: when the queue (128k lines) is full, logging waits, as a direct write did.
pub fn init() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("HOOKBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HOOKBRIDGE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("hookbridge-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let fmt: Box<dyn Layer<_> + Send + Sync> = if json { Box::new(fmt.json()) } else { Box::new(fmt) };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    // `set_global_default`, not `init()`: with tracing-subscriber's `tracing-log` feature (which
    // the `otlp` feature turns on, through tracing-opentelemetry) `init()` also installs a
    // `log` bridge at TRACE, so every `log::trace!` of the broker clients' dependencies built a
    // record only for the filter to drop it: ~10 CPU-µs per RabbitMQ event (BENCHMARKS.md).
    #[cfg(feature = "otlp")]
    {
        match otlp_layer() {
            Ok(Some(layer)) => {
                let _ = tracing::subscriber::set_global_default(registry.with(layer));
                return guard;
            }
            Ok(None) => {}
            Err(e) => eprintln!("hookbridge: OTLP export disabled: {e}"),
        }
    }
    let _ = tracing::subscriber::set_global_default(registry);
    guard
}

/// The OTLP provider, flushed at exit.
#[cfg(feature = "otlp")]
static OTLP: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = std::sync::OnceLock::new();

/// An OpenTelemetry layer exporting spans over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[cfg(feature = "otlp")]
fn otlp_layer<S>() -> anyhow::Result<Option<impl tracing_subscriber::Layer<S>>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry::trace::TracerProvider as _;
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("hookbridge")
                .build(),
        )
        .build();
    let tracer = provider.tracer("hookbridge");
    let _ = OTLP.set(provider.clone());
    opentelemetry::global::set_tracer_provider(provider);
    Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
}

/// Exports the spans still batched (with the `otlp` feature); call before exiting.
pub fn shutdown() {
    #[cfg(feature = "otlp")]
    if let Some(p) = OTLP.get() {
        // Export the spans still batched before exiting.
        let _ = p.shutdown();
    }
}
