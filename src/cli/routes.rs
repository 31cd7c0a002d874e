//! `hookbridge routes --type T [--source S]`.

use std::fmt::Write as _;

use crate::config::Config;
use crate::route::{Decision, Unmatched};

/// Explains where an event of type `ty` (from `source`, or any source) would go.
pub fn explain(config: &Config, ty: &str, source: Option<&str>) -> Result<String, String> {
    if let Some(s) = source {
        if !config.sources.iter().any(|src| src.name == s) {
            let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(format!("no source named {s:?} (defined: {})", known.join(", ")));
        }
    }
    let sources: Vec<&str> = match source {
        Some(s) => vec![s],
        None => config.sources.iter().map(|s| s.name.as_str()).collect(),
    };
    let sink_name = |i: usize| config.sinks.get(i).map_or("?", |s| s.name.as_str());
    let sink_label = |i: usize| {
        config.sinks.get(i).map_or_else(
            || "?".to_owned(),
            |s| format!("{} ({})", s.name, s.spec.type_name()),
        )
    };
    let mut out = String::new();
    for src in sources {
        let _ = writeln!(out, "type {ty} from source {src}:");
        let mut matched = false;
        for (i, rule) in config.router.rules().iter().enumerate() {
            if rule.source.as_deref().is_some_and(|s| s != src) {
                continue;
            }
            if let Some(p) = rule.types.iter().find(|p| p.matches(ty)) {
                matched = true;
                let sinks: Vec<&str> = rule.sinks.iter().map(|&i| sink_name(i)).collect();
                let _ = writeln!(
                    out,
                    "  routes[{i}] matches (source: {}, pattern: {p}) -> {}",
                    rule.source.as_deref().unwrap_or("any"),
                    sinks.join(", ")
                );
            }
        }
        match config.router.route(src, ty) {
            Decision::Sinks(s) => {
                if !matched {
                    let _ = writeln!(out, "  no route matches; [unmatched] policy = \"route\"");
                }
                let labels: Vec<String> = s.into_iter().map(sink_label).collect();
                let _ = writeln!(out, "  sinks: {}", labels.join(", "));
            }
            Decision::Drop => {
                let _ = writeln!(
                    out,
                    "  no route matches; [unmatched] policy = \"drop\": answered 202 dropped, published nowhere"
                );
            }
        }
    }
    debug_assert!(matches!(
        config.router.unmatched(),
        Unmatched::Drop | Unmatched::Route(_)
    ));
    Ok(out)
}
