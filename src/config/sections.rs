//! `[dedup]`, `[spool]`, `[quarantine]` and `[dead_letter]`, with defaults applied.

use std::time::Duration;

use super::raw::{self, DedupRaw, SpoolRaw};
use super::SinkConfig;
use crate::settings::Checker;

/// `[dedup]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct DedupConfig {
    /// Whether duplicates are detected.
    pub enabled: bool,
    /// How long a delivered id is remembered.
    pub window: Duration,
    /// Most ids remembered.
    pub max_entries: usize,
    /// Where remembered ids persist, if anywhere.
    pub path: Option<std::path::PathBuf>,
}

/// `[quarantine]`, checked.
#[derive(Debug, Clone)]
pub struct QuarantineConfig {
    /// Sink index.
    pub sink: usize,
    /// Body bytes kept.
    pub max_body: usize,
    /// Rate limit per second.
    pub per_second: u32,
}

/// `[spool]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Spool directory.
    pub dir: std::path::PathBuf,
    /// Most events held.
    pub max_events: u64,
    /// Most bytes held.
    pub max_bytes: u64,
    /// Most parked dead letters before new events are refused.
    pub max_parked: u64,
    /// First forwarder retry delay.
    pub retry_initial: Duration,
    /// Largest forwarder retry delay.
    pub retry_max: Duration,
    /// Attempts before a retryable failure is dead-lettered (`None`: unlimited), counted while
    /// the sink takes other events.
    pub max_attempts: Option<u32>,
    /// Sinks delivered with one publish in flight (strict spool order).
    pub strict_order: Vec<String>,
    /// How long delivered events are kept for replay.
    pub retain: Duration,
    /// Most bytes of delivered events kept.
    pub retain_max_bytes: u64,
}

pub(super) fn check_dedup(c: &mut Checker<'_>, present: bool) -> Option<DedupConfig> {
    let raw: DedupRaw = if present {
        c.extract("dedup")?
    } else {
        DedupRaw {
            enabled: None,
            window: None,
            max_entries: None,
            path: None,
        }
    };
    let max_entries = raw.max_entries.unwrap_or(100_000);
    if max_entries == 0 {
        c.error(
            "dedup.max_entries",
            "must be above zero",
            Some("set enabled = false to turn dedup off".into()),
        );
    }
    Some(DedupConfig {
        enabled: raw.enabled.unwrap_or(true),
        window: raw.window.map_or(Duration::from_secs(3600), |w| w.0),
        max_entries,
        path: raw.path,
    })
}

pub(super) fn check_quarantine(
    c: &mut Checker<'_>,
    present: bool,
    sinks: &[SinkConfig],
) -> Option<Option<QuarantineConfig>> {
    if !present {
        return Some(None);
    }
    let raw: raw::QuarantineRaw = c.extract("quarantine")?;
    let Some(sink) = sinks.iter().position(|s| s.name == raw.sink) else {
        let defined: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
        c.error(
            "quarantine.sink",
            format!("no sink named {:?}", raw.sink),
            Some(format!("defined: {}", defined.join(", "))),
        );
        return None;
    };
    Some(Some(QuarantineConfig {
        sink,
        max_body: raw.max_body.map_or(16 << 10, |b| b.0 as usize),
        per_second: match raw.per_second {
            Some(0) => {
                c.error(
                    "quarantine.per_second",
                    "must be at least 1",
                    Some("to stop quarantining, remove the [quarantine] table".into()),
                );
                return None;
            }
            n => n.unwrap_or(10),
        },
    }))
}

pub(super) fn check_dead_letter(
    c: &mut Checker<'_>,
    present: bool,
    sinks: &[SinkConfig],
) -> Option<Option<usize>> {
    if !present {
        return Some(None);
    }
    let raw: raw::DeadLetterRaw = c.extract("dead_letter")?;
    match sinks.iter().position(|s| s.name == raw.sink) {
        Some(i) => Some(Some(i)),
        None => {
            let defined: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
            c.error(
                "dead_letter.sink",
                format!("no sink named {:?}", raw.sink),
                Some(format!("defined: {}", defined.join(", "))),
            );
            None
        }
    }
}

/// `spool.max_attempts` when it is not set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

pub(super) fn check_spool(c: &mut Checker<'_>, present: bool) -> Option<SpoolConfig> {
    let raw: SpoolRaw = if present {
        c.extract("spool")?
    } else {
        SpoolRaw::default()
    };
    let cfg = SpoolConfig {
        dir: raw.dir.unwrap_or_else(|| "hookbridge-spool".into()),
        max_events: raw.max_events.unwrap_or(1_000_000),
        max_bytes: raw.max_bytes.map_or(1 << 30, |b| b.0),
        max_parked: raw.max_parked.unwrap_or(10_000),
        retry_initial: raw.retry_initial.map_or(Duration::from_millis(200), |d| d.0),
        retry_max: raw.retry_max.map_or(Duration::from_secs(30), |d| d.0),
        max_attempts: match &raw.max_attempts {
            None => Some(DEFAULT_MAX_ATTEMPTS),
            Some(raw::MaxAttempts::Count(n)) => Some(*n),
            Some(raw::MaxAttempts::Word(w)) if w == "unlimited" => None,
            Some(raw::MaxAttempts::Word(w)) => {
                c.error(
                    "spool.max_attempts",
                    format!("{w:?} is not a number of attempts"),
                    Some("a number above zero, or \"unlimited\"".into()),
                );
                None
            }
        },
        strict_order: raw.strict_order.clone(),
        retain: raw.retain.map_or(Duration::from_secs(24 * 3600), |d| d.0),
        retain_max_bytes: raw.retain_max_bytes.map_or(256 << 20, |b| b.0),
    };
    if cfg.max_attempts == Some(0) {
        c.error(
            "spool.max_attempts",
            "must be above zero",
            Some("\"unlimited\" retries until the sink takes the event".into()),
        );
    }
    if cfg.max_events == 0 {
        c.error("spool.max_events", "must be above zero", None);
    }
    if cfg.max_parked == 0 {
        c.error("spool.max_parked", "must be above zero", None);
    }
    if cfg.max_bytes == 0 {
        c.error("spool.max_bytes", "must be above zero", None);
    }
    if cfg.retry_initial > cfg.retry_max || cfg.retry_initial.is_zero() {
        c.error(
            "spool.retry_initial",
            "must be above zero and at most spool.retry_max",
            None,
        );
    }
    if cfg.dir.is_file() {
        c.error("spool.dir", format!("{} is a file", cfg.dir.display()), None);
    }
    Some(cfg)
}
