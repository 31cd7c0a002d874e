//! `[[routes]]` and `[unmatched]`, compiled into the router.

use figment::value::Dict;

use super::raw::{RouteRaw, UnmatchedRaw};
use super::{SinkConfig, SourceConfig};
use crate::route::{Pattern, Router, Rule, Unmatched};
use crate::settings::Checker;

/// Names of `items`, for hints.
fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// Sink names → indices into `sinks` (each error at `key[j]`); at least one is required.
fn resolve(c: &mut Checker<'_>, sinks: &[SinkConfig], key: String, wanted: &[String]) -> Vec<usize> {
    let defined = names(sinks.iter().map(|s| s.name.as_str()));
    let mut out = Vec::new();
    if wanted.is_empty() {
        c.error(
            key.clone(),
            "at least one sink is required",
            Some(format!("defined: {defined}")),
        );
    }
    for (j, n) in wanted.iter().enumerate() {
        match sinks.iter().position(|s| &s.name == n) {
            // A sink named twice is one target: publishing (and counting) it twice would
            // skew the spool's backlog and send the event twice.
            Some(i) if out.contains(&i) => {}
            Some(i) => out.push(i),
            None => c.error(
                format!("{key}[{j}]"),
                format!("no sink named {n:?}"),
                Some(format!("defined: {defined}")),
            ),
        }
    }
    out
}

/// One `[[routes]]` entry, the `i`th.
fn check_rule(
    c: &mut Checker<'_>,
    i: usize,
    r: &RouteRaw,
    sinks: &[SinkConfig],
    sources: &[SourceConfig],
) -> Rule {
    if let Some(s) = &r.source {
        if !sources.iter().any(|src| &src.name == s) {
            c.error(
                format!("routes[{i}].source"),
                format!("no source named {s:?}"),
                Some(format!(
                    "defined: {}",
                    names(sources.iter().map(|s| s.name.as_str()))
                )),
            );
        }
    }
    let mut types = Vec::new();
    let patterns = r.types.clone().unwrap_or_else(|| vec!["**".into()]);
    for (j, t) in patterns.iter().enumerate() {
        match Pattern::compile(t) {
            Ok(p) => types.push(p),
            Err(m) => c.error(
                format!("routes[{i}].types[{j}]"),
                format!("bad pattern: {m}"),
                Some(
                    "segments are separated by '.'; '*' = one segment, '**' = one or more (last only)".into(),
                ),
            ),
        }
    }
    let sink_ids = resolve(c, sinks, format!("routes[{i}].sinks"), &r.sinks);
    if r.enrich {
        let enriches = |s: &&SourceConfig| s.provider.enriches();
        let ok = match &r.source {
            Some(name) => sources.iter().filter(enriches).any(|s| &s.name == name),
            None => sources.iter().any(|s| enriches(&s)),
        };
        if !ok {
            c.error(
                format!("routes[{i}].enrich"),
                "enrichment needs a fattureincloud source with an [api] table",
                Some("add [sources.NAME.api] token = { env = \"FIC_ACCESS_TOKEN\" } and source = \"NAME\" to the route".into()),
            );
        }
    }
    Rule {
        source: r.source.clone(),
        types,
        sinks: sink_ids,
        enrich: r.enrich,
    }
}

/// `[unmatched]`: drop (default) or route to sinks.
fn check_unmatched(c: &mut Checker<'_>, top: &Dict, sinks: &[SinkConfig]) -> Option<Unmatched> {
    let raw: UnmatchedRaw = if top.contains_key("unmatched") {
        c.extract("unmatched")?
    } else {
        UnmatchedRaw {
            policy: None,
            sinks: None,
        }
    };
    Some(match raw.policy.as_deref() {
        None | Some("drop") => {
            if raw.sinks.is_some() {
                c.error("unmatched.sinks", "only used with policy = \"route\"", None);
            }
            Unmatched::Drop
        }
        Some("route") => Unmatched::Route(resolve(
            c,
            sinks,
            "unmatched.sinks".into(),
            raw.sinks.as_deref().unwrap_or_default(),
        )),
        Some(other) => {
            c.error(
                "unmatched.policy",
                format!("unknown policy {other:?}"),
                Some("one of: drop, route".into()),
            );
            Unmatched::Drop
        }
    })
}

pub(super) fn check_routes(
    c: &mut Checker<'_>,
    top: &Dict,
    sinks: &[SinkConfig],
    sources: &[SourceConfig],
) -> Option<Router> {
    let rules_raw: Vec<RouteRaw> = if top.contains_key("routes") {
        c.extract("routes")?
    } else {
        Vec::new()
    };
    let rules = rules_raw
        .iter()
        .enumerate()
        .map(|(i, r)| check_rule(c, i, r, sinks, sources))
        .collect();
    let unmatched = check_unmatched(c, top, sinks)?;
    Some(Router::new(rules, unmatched))
}
