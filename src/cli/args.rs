//! The command line's arguments, as clap parses them (the binary parses; the library runs).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Receive webhooks, verify them, normalise them to CloudEvents and publish them to brokers.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server (the default). Without a configuration, a built-in one accepts CloudEvents
    /// on 127.0.0.1:8080/events and appends them to ./hookbridge-events.jsonl.
    Serve {
        /// Configuration file (TOML). Environment overrides: HOOKBRIDGE_<KEY>__<KEY>.
        /// SIGHUP reloads it; a broken new configuration is rejected and the old one kept.
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: Option<PathBuf>,
        /// Also reload when the configuration file changes.
        #[arg(long)]
        watch: bool,
    },
    /// Parse and validate a configuration; print every error and exit non-zero if any.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Show which routes match an event type and which sinks it would reach.
    Routes {
        /// Configuration file (TOML).
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: PathBuf,
        /// Event type, e.g. it.fattureincloud.webhooks.entities.clients.create.
        #[arg(long = "type", short)]
        ty: String,
        /// Only this source (default: every source).
        #[arg(long, short)]
        source: Option<String>,
    },
    /// Send a request that the source's verifier accepts, and print the answer.
    Send {
        /// Configuration file (TOML); its secrets sign the request.
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: PathBuf,
        /// Source name.
        #[arg(long, short)]
        source: String,
        /// Event type (a per-kind default when absent).
        #[arg(long = "type", short)]
        ty: Option<String>,
        /// Body from a file, or `-` for stdin (a per-kind default when absent).
        #[arg(long, short)]
        data: Option<PathBuf>,
        /// Target URL (default: http://<server.listen><source path>).
        #[arg(long, short)]
        url: Option<String>,
        /// Signing key for token sources: PEM EC private key for Fatture in Cloud (a test key),
        /// or for `jwt` sources the PEM private key (HS*: the shared secret).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Fatture in Cloud company id for the subject (default 1).
        #[arg(long)]
        company: Option<String>,
    },
    /// Re-publish events the spool retained (or parked dead letters), through the running
    /// server's admin endpoint (server.admin_listen) or, when it is stopped, the spool itself.
    Replay {
        #[command(flatten)]
        select: Selection,
        /// Replay the dead letters parked in the spool (each to the sink it failed on); without
        /// it, --since is required.
        #[arg(long)]
        parked: bool,
        /// Re-queue to this sink instead (e.g. events parked for a sink that was removed or
        /// renamed: reason `sink_removed`).
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete dead letters parked in the spool (selected like `replay --parked`), through the
    /// running server's admin endpoint or, when it is stopped, the spool itself.
    Discard {
        #[command(flatten)]
        select: Selection,
        /// Every parked event (without a selector or this, nothing is deleted).
        #[arg(long)]
        all: bool,
    },
    /// Fatture in Cloud tools.
    Fic {
        #[command(subcommand)]
        command: FicCommand,
    },
    /// Exit 0 if the URL answers 2xx within 3 s (container health checks without curl).
    Healthcheck {
        /// URL to probe.
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

#[derive(Subcommand)]
pub enum FicCommand {
    /// Manage the webhook subscriptions of a company (API token and company from env or flags).
    Subscriptions {
        #[command(subcommand)]
        action: SubAction,
        /// FIC API base URL. Default: the source's `api.base_url`, else FIC's.
        #[arg(long, global = true, env = "FIC_API_URL")]
        api_url: Option<String>,
        /// OAuth access token. Default: the source's `api.token`.
        #[arg(long, global = true, env = "FIC_ACCESS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Company id. Default: the source's `api.company_id`.
        #[arg(long, global = true, env = "FIC_COMPANY_ID")]
        company: Option<String>,
        /// Configuration file (for the source's public_url, routes and verification method).
        #[arg(long, short, global = true, env = "HOOKBRIDGE_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum SubAction {
    /// List subscriptions.
    List,
    /// Show one subscription.
    Show {
        /// Subscription id (e.g. SUB123).
        id: String,
    },
    /// Create the subscription for a source (types from its routes) and wait until verified.
    Create {
        /// Source name.
        #[arg(long)]
        source: String,
        /// How long to wait for verification.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Update a subscription's sink and types from a source's current configuration.
    Update {
        /// Subscription id.
        id: String,
        /// Source name.
        #[arg(long)]
        source: String,
    },
    /// Re-run verification, sending the source's verification method again, and wait.
    Verify {
        /// Subscription id.
        id: String,
        /// Source name.
        #[arg(long)]
        source: String,
        /// How long to wait for verification.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Delete a subscription.
    Delete {
        /// Subscription id.
        id: String,
    },
}

/// What `replay` and `discard` select.
#[derive(clap::Args, Debug)]
pub struct Selection {
    /// Configuration file (TOML).
    #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
    pub config: PathBuf,
    /// Received at or after: RFC 3339 time, or a duration ago (`2h`).
    #[arg(long)]
    pub since: Option<String>,
    /// Received before: RFC 3339 time, or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Only events from this source.
    #[arg(long, short)]
    pub source: Option<String>,
    /// Only types matching this pattern (`*` one segment, `**` the rest).
    #[arg(long = "type", short)]
    pub ty: Option<String>,
    /// Only this sink (replay: default every sink each event went to; discard: the sink each
    /// event was parked for).
    #[arg(long)]
    pub sink: Option<String>,
    /// List what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}
