//! `[sources.*]`: what every source has (path, kind, delivery, `keep_headers`, `dedup_on`),
//! then the kind's own check from the registry.

use figment::value::Value;

use super::{kind, Checked, Delivery, KindCheck, SourceConfig, KINDS};
use crate::settings::raw::SourceRaw;
use crate::settings::Checker;
use crate::verify::SECRET_HEADERS;

/// Paths served by hookbridge itself.
const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Checks `[sources.*]`; `loopback`: whether the webhook listener is loopback only.
pub fn check_sources(c: &mut Checker<'_>, value: Option<&Value>, loopback: bool) -> Vec<SourceConfig> {
    let mut sources: Vec<SourceConfig> = Vec::new();
    let names = c.table_names(value, "sources");
    if value.is_some() && names.is_empty() || value.is_none() {
        c.error(
            "sources",
            "no source is configured",
            Some("add a [sources.NAME] table with path, kind and verify".into()),
        );
    }
    let mut paths: Vec<(String, String)> = Vec::new();
    for name in names {
        let key = format!("sources.{name}");
        let Some(raw) = c.extract::<SourceRaw>(&key) else {
            continue;
        };
        let duplicate = paths.iter().find(|(p, _)| *p == raw.path).map(|(_, n)| n.clone());
        if let Some(other) = &duplicate {
            c.error(
                format!("{key}.path"),
                format!("path {:?} is already used by source {other:?}", raw.path),
                None,
            );
        } else {
            paths.push((raw.path.clone(), name.clone()));
        }
        let checked = check_source(c, &key, name, raw, loopback);
        if let (Some(source), None) = (checked, duplicate) {
            sources.push(source);
        }
    }
    sources
}

fn check_path(c: &mut Checker<'_>, key: &str, path: &str) -> bool {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        c.error(
            format!("{key}.path"),
            format!("invalid path {path:?}"),
            Some("an absolute URL path such as \"/webhooks/fic\"".into()),
        );
        return false;
    }
    if RESERVED_PATHS.contains(&path) {
        c.error(
            format!("{key}.path"),
            format!("{path:?} is reserved for hookbridge itself"),
            None,
        );
        return false;
    }
    true
}

/// The keys only some kinds read, each with whether the table sets it.
fn kind_keys(raw: &SourceRaw) -> [(&'static str, bool); 4] {
    [
        ("mapping", raw.mapping.is_some()),
        ("public_url", raw.public_url.is_some()),
        ("api", raw.api.is_some()),
        ("subscription", raw.subscription.is_some()),
    ]
}

/// Refuses the kind-specific keys this source's kind does not read.
fn check_kind_keys(c: &mut Checker<'_>, key: &str, kind: &super::Kind, raw: &SourceRaw) {
    for (k, set) in kind_keys(raw) {
        if !set || kind.keys.contains(&k) {
            continue;
        }
        let takers: Vec<&str> = KINDS
            .iter()
            .filter(|o| o.keys.contains(&k))
            .map(|o| o.name)
            .collect();
        c.error(
            format!("{key}.{k}"),
            format!(
                "only {} sources take `{k}`; here it would do nothing",
                takers.join(" and ")
            ),
            None,
        );
    }
}

fn check_delivery(c: &mut Checker<'_>, key: &str, raw: Option<&str>) -> Option<Delivery> {
    match raw {
        None | Some("sync") => Some(Delivery::Sync),
        Some("spool") => Some(Delivery::Spool),
        Some(other) => {
            c.error(
                format!("{key}.delivery"),
                format!("unknown delivery mode {other:?}"),
                Some("one of: sync, spool".into()),
            );
            None
        }
    }
}

fn check_dedup_on(c: &mut Checker<'_>, key: &str, raw: Option<&str>, default: bool) -> Option<bool> {
    match raw {
        None => Some(default),
        Some("id") => Some(false),
        Some("body") => Some(true),
        Some(other) => {
            c.error(
                format!("{key}.dedup_on"),
                format!("unknown value {other:?}"),
                Some("one of: id, body".into()),
            );
            None
        }
    }
}

fn check_source(
    c: &mut Checker<'_>,
    key: &str,
    name: String,
    raw: SourceRaw,
    loopback: bool,
) -> Option<SourceConfig> {
    let path_ok = check_path(c, key, &raw.path);
    let kind = kind(&raw.kind);
    if kind.is_none() {
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        c.error(
            format!("{key}.kind"),
            format!("unknown source kind {:?}", raw.kind),
            Some(format!("one of: {}", names.join(", "))),
        );
    }
    let keep_headers = check_keep_headers(c, key, raw.keep_headers.as_deref());
    let dedup_on_body = check_dedup_on(
        c,
        key,
        raw.dedup_on.as_deref(),
        kind.is_some_and(|k| k.dedup_on_body),
    );
    let delivery = check_delivery(c, key, raw.delivery.as_deref());
    let checked = kind.and_then(|kind| {
        check_kind_keys(c, key, kind, &raw);
        let mut kc = KindCheck {
            c: &mut *c,
            key,
            name: &name,
            raw: &raw,
            loopback,
        };
        (kind.check)(&mut kc)
    });
    // The verifier's own credential headers (a custom token, JWT, HMAC header) are never kept:
    // they would be copied into every event.
    if let (Some(Checked { verifier, .. }), Some(kept)) = (&checked, &keep_headers) {
        let secret = verifier.credential_headers();
        for (i, h) in kept.iter().enumerate() {
            if secret.iter().any(|s| s.eq_ignore_ascii_case(h)) {
                c.error(
                    format!("{key}.keep_headers[{i}]"),
                    format!("{h:?} carries this source's credential and is never kept"),
                    None,
                );
            }
        }
    }
    let Checked { provider, verifier } = checked?;
    if !path_ok {
        return None;
    }
    Some(SourceConfig {
        name,
        path: raw.path,
        provider,
        delivery: delivery?,
        verifier,
        keep_headers: keep_headers?,
        dedup_on_body: dedup_on_body?,
    })
}

/// `keep_headers`: valid names, never credentials or signatures.
fn check_keep_headers(c: &mut Checker<'_>, key: &str, raw: Option<&[String]>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, h) in raw.unwrap_or_default().iter().enumerate() {
        let lower = h.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            c.error(
                format!("{key}.keep_headers[{i}]"),
                format!("invalid header name {h:?}"),
                None,
            );
            ok = false;
        } else if SECRET_HEADERS.contains(&lower.as_str()) {
            c.error(
                format!("{key}.keep_headers[{i}]"),
                format!("{h:?} carries credentials or a signature and is never kept"),
                None,
            );
            ok = false;
        } else {
            out.push(lower);
        }
    }
    ok.then_some(out)
}
