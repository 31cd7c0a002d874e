//! What `replay` and `discard` select, the check of a selection against the configuration
//! (shared by the admin API and the command line), and the match of one record.

use serde::{Deserialize, Serialize};

use crate::deliver::spool::{Record, SpoolError};
use crate::route::Pattern;

/// What `replay` selects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    /// Received at or after (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<time::OffsetDateTime>,
    /// Received before (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<time::OffsetDateTime>,
    /// Only events from this hookbridge source.
    #[serde(default)]
    pub source: Option<String>,
    /// Only types matching this pattern (`*` one segment, `**` any).
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// Only to this sink (default: every sink the event went to).
    #[serde(default)]
    pub sink: Option<String>,
    /// Replay the parked dead letters (to the sink each failed on) instead of delivered events.
    #[serde(default)]
    pub parked: bool,
    /// Re-queue to this sink instead (e.g. for events parked for a sink that was removed or
    /// renamed).
    #[serde(default)]
    pub to: Option<String>,
    /// List what would be replayed; publish nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// For a discard: every parked event (a discard without a selector or this is refused).
    #[serde(default)]
    pub all: bool,
}

impl ReplayFilter {
    /// Whether it selects by anything (time window, source, type or sink).
    pub fn selects_something(&self) -> bool {
        self.since.is_some()
            || self.until.is_some()
            || self.source.is_some()
            || self.ty.is_some()
            || self.sink.is_some()
    }
}

/// Checks a replay filter against the configuration: the error names the field. The admin API
/// and `hookbridge replay`/`discard` both call it before touching the spool.
pub fn check_filter(
    config: &crate::config::Config,
    filter: &ReplayFilter,
) -> Result<(), (&'static str, String)> {
    if let Some(t) = &filter.ty {
        Pattern::compile(t).map_err(|e| ("type", e))?;
    }
    // With --parked, `sink` may name a sink that was removed (its events parked `sink_removed`).
    if let Some(sink) = filter.sink.as_ref().filter(|_| !filter.parked) {
        if !config.sinks.iter().any(|s| &s.name == sink) {
            return Err(("sink", format!("no sink named {sink:?}")));
        }
    }
    if let Some(to) = &filter.to {
        if !config.sinks.iter().any(|s| &s.name == to) {
            return Err(("to", format!("no sink named {to:?}")));
        }
    }
    if let Some(source) = &filter.source {
        if !config.sources.iter().any(|s| &s.name == source) {
            return Err(("source", format!("no source named {source:?}")));
        }
    }
    if let (Some(a), Some(b)) = (filter.since, filter.until) {
        if a >= b {
            return Err(("until", "must be after since".into()));
        }
    }
    Ok(())
}

/// A filter with its type pattern compiled, applied to each record a scan of the spool reads
/// (so only the selected records are held in memory).
pub(super) struct Matcher {
    filter: ReplayFilter,
    pattern: Option<Pattern>,
}

impl Matcher {
    pub(super) fn new(filter: &ReplayFilter) -> Result<Matcher, SpoolError> {
        let pattern = match &filter.ty {
            Some(p) => Some(Pattern::compile(p).map_err(SpoolError::Io)?),
            None => None,
        };
        Ok(Matcher {
            filter: filter.clone(),
            pattern,
        })
    }

    /// Whether `record` is in the filter's time window, source and type.
    fn selects(&self, record: &Record) -> bool {
        let f = &self.filter;
        let received = record.received();
        f.since.is_none_or(|s| received.is_some_and(|r| r >= s))
            && f.until.is_none_or(|u| received.is_some_and(|r| r < u))
            && f.source
                .as_deref()
                .is_none_or(|s| record.source_name() == Some(s))
            && self.pattern.as_ref().is_none_or(|p| p.matches(&record.ty))
    }

    /// The record to re-queue, targeted at the sinks to replay it to, if the filter selects it
    /// (`parked_sink`: the sink a parked record was parked for).
    pub(super) fn to_replay(&self, mut record: Record, parked_sink: Option<&str>) -> Option<Record> {
        let f = &self.filter;
        // Copies made by an earlier replay are not selected again (their originals are).
        let copy = record.extensions.contains_key("hbreplay");
        let keep = self.selects(&record) && !(copy && parked_sink.is_none());
        if !keep {
            return None;
        }
        if let Some(sink) = &f.sink {
            record.targets.retain(|t| t == sink);
        }
        if record.targets.is_empty() {
            return None;
        }
        if let Some(to) = &f.to {
            record.targets = vec![to.clone()];
        }
        Some(record)
    }

    /// The parked record (parked for `sink`) if the filter selects it for a discard.
    pub(super) fn to_discard(&self, record: Record, sink: &str) -> Option<Record> {
        let keep = self.selects(&record) && self.filter.sink.as_deref().is_none_or(|s| s == sink);
        keep.then_some(record)
    }
}
