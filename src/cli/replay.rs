//! `hookbridge replay`: re-publish retained spool events (or parked dead letters) selected by
//! time window, source, type and sink; `hookbridge discard`: delete parked ones. Goes through the running server's admin endpoint
//! (`server.admin_listen`, with `server.admin_token`); when no server answers there, opens the spool directly (it is locked
//! while a server runs, so the two never write it at once). Either way the events are appended
//! to the spool again and the forwarders deliver them.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::args::Selection;
use crate::config::Config;
use crate::deliver::spool::replay::{check_filter, discard_answer, replay_answer};
use crate::deliver::spool::{Limits, ReplayFilter, Spool, SpoolError};

/// A time given on the command line: RFC 3339, or a duration meaning that long ago (`2h`).
pub fn parse_time(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    match humantime::parse_duration(text) {
        Ok(d) => Ok(now - d),
        Err(_) => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-11-29T10:00:00Z) nor a duration ago (90m, 2h)"
        )),
    }
}

/// What the command does with the events it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Re-queue them (`hookbridge replay`).
    Replay,
    /// Delete parked dead letters (`hookbridge discard`).
    Discard,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Replay => "/admin/replay",
            Action::Discard => "/admin/discard",
        }
    }
}

/// Runs the replay; returns the answer (the admin endpoint's JSON shape either way).
pub async fn run(config: &Config, filter: &ReplayFilter) -> Result<Value, String> {
    run_action(config, filter, Action::Replay).await
}

/// Runs `action`; returns the answer (the admin endpoint's JSON shape either way).
pub async fn run_action(config: &Config, filter: &ReplayFilter, action: Action) -> Result<Value, String> {
    check_filter(config, filter).map_err(|(field, m)| format!("--{field}: {m}"))?;
    if !config
        .sources
        .iter()
        .any(|s| s.delivery == crate::config::Delivery::Spool)
    {
        return Err("no source uses delivery = \"spool\": there is nothing retained to replay".into());
    }
    if let Some(addr) = config.server.admin_listen {
        let url = format!("http://{addr}{}", action.path());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client
            .post(&url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(filter).map_err(|e| e.to_string())?);
        // The admin API's credential, from the same configuration the server reads.
        if let Some(token) = config.server.admin_tokens.first() {
            let token = std::str::from_utf8(token.expose())
                .map_err(|_| "server.admin_token is not UTF-8".to_owned())?;
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(resp) => {
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
                let body: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{url} answered {status} without JSON: {e}"))?;
                if !status.is_success() {
                    return Err(format!("{url} answered {status}: {body}"));
                }
                return Ok(body);
            }
            Err(e) if e.is_connect() => {
                tracing::debug!(%url, error = %e, "no server on the admin listener; opening the spool");
            }
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    let limits = Limits {
        max_events: config.spool.max_events,
        max_bytes: config.spool.max_bytes,
        max_parked: config.spool.max_parked,
    };
    let spool = Spool::open(&config.spool.dir, limits).map_err(|e| match e {
        SpoolError::Io(m) if m.contains("lock") || m.contains("in use") || m.contains("already open") => format!(
            "the spool {} is held by a running hookbridge; set server.admin_listen to replay through it, or stop it first ({m})",
            config.spool.dir.display()
        ),
        other => other.to_string(),
    })?;
    Ok(match action {
        Action::Replay => {
            let items = spool.replay(filter).await.map_err(|e| e.to_string())?;
            replay_answer(&items, filter.dry_run)
        }
        Action::Discard => {
            let items = spool.discard(filter).await.map_err(|e| e.to_string())?;
            discard_answer(&items, filter.dry_run)
        }
    })
}

/// `hookbridge replay`: `--since` is required unless `--parked` (exit 2 without it).
pub fn replay_command(select: Selection, parked: bool, to: Option<String>) -> ExitCode {
    if select.since.is_none() && !parked {
        eprintln!("hookbridge replay: --since is required (unless --parked)");
        return ExitCode::from(2);
    }
    command(select, parked, false, to, Action::Replay)
}

/// `hookbridge discard`: parked dead letters only.
pub fn discard_command(select: Selection, all: bool) -> ExitCode {
    command(select, true, all, None, Action::Discard)
}

/// `replay` or `discard`: runs it and prints the answer (exit 2 for a time that does not parse).
fn command(select: Selection, parked: bool, all: bool, to: Option<String>, action: Action) -> ExitCode {
    let name = match action {
        Action::Replay => "replay",
        Action::Discard => "discard",
    };
    let now = OffsetDateTime::now_utc();
    let parse = |t: Option<String>| t.map(|t| parse_time(&t, now)).transpose();
    let (since, until) = match (parse(select.since), parse(select.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("hookbridge {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = ReplayFilter {
        since,
        until,
        source: select.source,
        ty: select.ty,
        sink: select.sink,
        parked,
        to,
        dry_run: select.dry_run,
        all,
    };
    let (path, json) = (select.config, select.json);
    let run = || -> anyhow::Result<()> {
        let config = crate::config::load(Some(&path)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let runtime = tokio::runtime::Runtime::new()?;
        let answer = runtime
            .block_on(run_action(&config, &filter, action))
            .map_err(|e| anyhow::anyhow!(e))?;
        if json {
            println!("{answer}");
        } else {
            print!("{}", describe(&answer));
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookbridge {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The answer as text for people.
pub fn describe(answer: &Value) -> String {
    let mut out = String::new();
    let dry = answer["dry_run"].as_bool().unwrap_or(false);
    for e in answer["events"].as_array().into_iter().flatten() {
        let sinks: Vec<&str> = e["sinks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "{:>8}  {}  {}  {}  {} -> {}\n",
            e["seq"],
            e["received"].as_str().unwrap_or("-"),
            e["source"].as_str().unwrap_or("-"),
            e["type"].as_str().unwrap_or("-"),
            e["id"].as_str().unwrap_or("-"),
            sinks.join(", ")
        ));
    }
    if answer["truncated"].as_bool() == Some(true) {
        out.push_str("… (list truncated)\n");
    }
    let n = answer["matched"].as_u64().unwrap_or(0);
    if answer.get("discarded").is_some() {
        out.push_str(&if dry {
            format!("dry run: {n} parked event(s) would be discarded; nothing was deleted\n")
        } else {
            format!("discarded {n} parked event(s)\n")
        });
        return out;
    }
    if dry {
        out.push_str(&format!(
            "dry run: {n} event(s) would be replayed; nothing was published\n"
        ));
    } else {
        out.push_str(&format!(
            "replayed {n} event(s): queued in the spool for their sinks\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_durations_ago() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        assert_eq!(
            parse_time("2h", now).expect("2h"),
            now - Duration::from_secs(7200)
        );
        assert_eq!(
            parse_time("2027-01-15T08:00:00Z", now)
                .expect("rfc3339")
                .unix_timestamp(),
            1_800_000_000
        );
        assert!(parse_time("yesterday", now)
            .expect_err("not a time")
            .contains("neither"));
    }
}
