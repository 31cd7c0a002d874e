//! `hookbridge-load`: the load generator and the baselines of hookbridge's benchmarks.
//!
//! - `load`: HTTP load against hookbridge (or the bare baseline server) with requests built and
//!   signed **before** the run (unique ids, no crypto in the hot loop), in closed-loop saturation
//!   (`--connections` requests in flight) or open-loop at a fixed `--rate`, where latency is
//!   measured from each request's *intended* send time (coordinated-omission corrected).
//! - `http-baseline`: a bare warp route answering 204, the HTTP ceiling.
//! - `verify`: one core verifying pre-built requests with hookbridge's verifier, the
//!   verify-bound rate.
//! - `publish`: the broker's own client publishing the same messages directly with the same
//!   acknowledgement settings as hookbridge's sink (JetStream PubAck, RabbitMQ publisher
//!   confirms, Kafka `acks=all` idempotent), closed-loop or at a fixed rate.
//!
//! - `proxy`: a TCP proxy to a broker; the outage scenario kills it to cut the broker off
//!   without touching the shared broker service.
//!
//! Every command prints one JSON object: counts, rate, latency percentiles and this process's
//! CPU seconds (so the harness can flag a run where the generator saturated its core).

mod drive;
mod workers;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use warp::Filter as _;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP load.
    Load {
        /// hookbridge configuration: requests are built for `--source` with its secrets.
        #[arg(long)]
        config: PathBuf,
        /// Source name.
        #[arg(long)]
        source: String,
        /// Target URL (default: the source's URL from the configuration).
        #[arg(long)]
        url: Option<String>,
        /// Signing key (PEM) for Fatture in Cloud / jwt sources.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        run: drive::RunArgs,
        /// Write the ids answered 2xx here, one per line (for the no-loss check).
        #[arg(long)]
        ids_out: Option<PathBuf>,
        #[command(flatten)]
        body: workers::BodyArgs,
    },
    /// Serve a bare 204 on `--listen` until killed.
    HttpBaseline {
        #[arg(long, default_value = "127.0.0.1:18081")]
        listen: std::net::SocketAddr,
    },
    /// Forward TCP connections from `--listen` to `--upstream` until killed.
    Proxy {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        upstream: String,
    },
    /// Verify pre-built requests of `--source` on one core for `--duration`.
    Verify {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        source: String,
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long, default_value = "5s", value_parser = humantime_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 20_000)]
        pool: usize,
    },
    /// Publish directly with the broker's client: the same messages hookbridge's sink publishes
    /// for the load's events (headers, properties and body).
    Publish {
        /// nats | rabbitmq | kafka
        #[arg(long)]
        broker: String,
        /// Broker URL / bootstrap servers.
        #[arg(long)]
        url: String,
        /// Subject, routing key (default exchange) or topic.
        #[arg(long)]
        target: String,
        #[command(flatten)]
        run: drive::RunArgs,
        #[arg(long, default_value = "bench")]
        id_prefix: String,
        /// Write the ids acknowledged here, one per line (for the no-loss check).
        #[arg(long)]
        ids_out: Option<PathBuf>,
    },
    /// Create (or with --remove delete) a scenario's stream, queue or topic.
    Setup {
        #[arg(long)]
        broker: String,
        #[arg(long)]
        url: String,
        /// Stream, queue or topic name.
        #[arg(long)]
        target: String,
        /// JetStream: the stream takes `<subject>.>`.
        #[arg(long, default_value = "hbbench")]
        subject: String,
        #[arg(long)]
        remove: bool,
    },
    /// Read a run's messages back with the broker's client and check every 2xx'd id is there.
    Readback {
        #[arg(long)]
        broker: String,
        #[arg(long)]
        url: String,
        /// JetStream stream, RabbitMQ queue or Kafka topic.
        #[arg(long)]
        target: String,
        /// The ids to find, one per line.
        #[arg(long)]
        ids: PathBuf,
        /// Stop when no message arrived for this long.
        #[arg(long, default_value = "3s", value_parser = humantime_duration)]
        idle: Duration,
        /// Take each message's id from its JSON body's `"id"` first (`load --body-id`), its id
        /// header second. Without it: the header first, the body when there is no header.
        #[arg(long)]
        body_id: bool,
    },
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(async move {
        match cli.command {
            Command::Load {
                config,
                source,
                url,
                key,
                run,
                ids_out,
                body,
            } => workers::load(&config, &source, url, key, &run, ids_out, &body).await,
            Command::HttpBaseline { listen } => {
                let route = warp::any().map(|| warp::http::StatusCode::NO_CONTENT);
                let listener = tokio::net::TcpListener::bind(listen).await?;
                warp::serve(route).incoming(listener).run().await;
                Ok(serde_json::json!({}))
            }
            Command::Proxy { listen, upstream } => {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                loop {
                    let (mut inbound, _) = listener.accept().await?;
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = inbound.set_nodelay(true);
                            let _ = outbound.set_nodelay(true);
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
            Command::Verify {
                config,
                source,
                key,
                duration,
                pool,
            } => workers::verify(&config, &source, key, duration, pool),
            Command::Publish {
                broker,
                url,
                target,
                run,
                id_prefix,
                ids_out,
            } => workers::publish(&broker, &url, &target, &run, &id_prefix, ids_out).await,
            Command::Setup {
                broker,
                url,
                target,
                subject,
                remove,
            } => workers::setup(&broker, &url, &target, &subject, remove).await,
            Command::Readback {
                broker,
                url,
                target,
                ids,
                idle,
                body_id,
            } => workers::readback(&broker, &url, &target, &ids, idle, body_id).await,
        }
    })?;
    println!("{out}");
    Ok(())
}
