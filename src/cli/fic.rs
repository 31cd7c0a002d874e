//! `hookbridge fic subscriptions …`: manage the Fatture in Cloud webhook subscription a source
//! receives, from the source's own configuration.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::Config;
use crate::sources::fic::api::{Api, ApiError};
use crate::sources::fic::{types, Fic};

/// A subscription action.
#[derive(Debug, Clone)]
pub enum Action {
    /// List the company's subscriptions.
    List,
    /// Show one.
    Show {
        /// Subscription id.
        id: String,
    },
    /// Create one for a source and wait until it is verified.
    Create {
        /// Source name.
        source: String,
        /// How long to wait for `verified: true`.
        wait: Duration,
    },
    /// Update one from a source's current routes.
    Update {
        /// Subscription id.
        id: String,
        /// Source name.
        source: String,
    },
    /// Re-run verification (the method is sent again) and wait.
    Verify {
        /// Subscription id.
        id: String,
        /// Source name (its verification method).
        source: String,
        /// How long to wait.
        wait: Duration,
    },
    /// Delete one.
    Delete {
        /// Subscription id.
        id: String,
    },
}

/// Output of a successful action, and whether the goal was reached (exit status).
pub struct Outcome {
    /// Text or JSON to print.
    pub output: String,
    /// `false` when e.g. the subscription did not get verified in time.
    pub ok: bool,
}

fn fic_source<'a>(config: &'a Config, name: &str) -> Result<&'a Fic, String> {
    let s = config
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no source named {name:?}"))?;
    s.provider_as::<Fic>()
        .ok_or_else(|| format!("source {name:?} is not a fattureincloud source"))
}

/// The concrete FIC types the routes for `source` can match.
pub fn types_for(config: &Config, source: &str) -> Vec<String> {
    let patterns: Vec<_> = config
        .router
        .rules()
        .iter()
        .filter(|r| r.source.as_deref().is_none_or(|s| s == source))
        .flat_map(|r| r.types.iter())
        .collect();
    types::expand(&patterns)
}

fn settings(s: &Fic) -> (String, String, String) {
    let (method, mapping) = s.subscription.clone();
    (s.public_url().to_owned(), method, mapping)
}

fn table(subs: &[Value]) -> String {
    let mut out = format!("{:<12} {:<9} {:<6} {}\n", "ID", "VERIFIED", "TYPES", "SINK");
    for s in subs {
        let _ = writeln!(
            out,
            "{:<12} {:<9} {:<6} {}",
            s["id"].as_str().unwrap_or("?"),
            s["verified"]
                .as_bool()
                .map_or("?", |v| if v { "yes" } else { "no" }),
            s["types"].as_array().map_or(0, Vec::len),
            s["sink"].as_str().unwrap_or("?")
        );
    }
    out
}

/// Polls the subscription until FIC has verified it or `wait` is over. FIC verifies within
/// seconds, and every poll spends one request of its hourly quota (1,000): the first poll
/// after 500 ms, then each gap doubles up to 16 s — 9 polls in a minute, not 120.
async fn wait_verified(api: &Api, id: &str, wait: Duration) -> Result<Value, ApiError> {
    let deadline = Instant::now() + wait;
    let mut gap = Duration::from_millis(500);
    loop {
        let sub = api.show(id).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if sub["data"]["verified"].as_bool() == Some(true) || left.is_zero() {
            return Ok(sub);
        }
        tokio::time::sleep(gap.min(left)).await;
        gap = (gap * 2).min(MAX_POLL_GAP);
    }
}

/// The longest gap between two polls of a subscription's verification.
const MAX_POLL_GAP: Duration = Duration::from_secs(16);

/// How the subscriptions tool reaches FIC: `(API base URL, token, company id)`. Each from its
/// flag or environment variable when given, else from the source's `[sources.NAME.api]` table
/// (`base_url`, `token`, `company_id`): the source the action names, or the configuration's only
/// Fatture in Cloud source with an `api` table.
pub fn credentials(
    config: &Config,
    source: Option<&str>,
    api_url: Option<String>,
    token: Option<String>,
    company: Option<String>,
) -> Result<(String, String, String), String> {
    let api = match source {
        Some(name) => fic_source(config, name)?.enrichment.as_ref(),
        None => {
            let with_api: Vec<_> = config
                .sources
                .iter()
                .filter_map(|s| s.provider_as::<Fic>()?.enrichment.as_ref())
                .collect();
            (with_api.len() == 1).then(|| with_api[0])
        }
    };
    let token = token
        .or_else(|| api.map(|a| a.token.clone()))
        .ok_or("no access token: set FIC_ACCESS_TOKEN, pass --token, or set [sources.NAME.api] token")?;
    let company = company
        .or_else(|| api.and_then(|a| a.company_id.clone()))
        .ok_or("no company id: set FIC_COMPANY_ID, pass --company, or set [sources.NAME.api] company_id")?;
    let url = api_url
        .or_else(|| api.map(|a| a.base_url.clone()))
        .unwrap_or_else(|| crate::sources::fic::api::DEFAULT_BASE_URL.to_owned());
    Ok((url, token, company))
}

const NOT_VERIFIED: &str =
    "not verified: Fatture in Cloud's GET to the sink was not answered with the challenge. \
Check that public_url is reachable from the internet over HTTPS, points at this source's path, \
and that the source trusts FIC's key (verify.public_key); then run `hookbridge fic subscriptions verify`. \
FIC allows 5 attempts, one per 10 minutes.";

/// Runs an action.
pub async fn run(config: &Config, api: &Api, action: Action, as_json: bool) -> Result<Outcome, String> {
    let err = |e: ApiError| e.message;
    match action {
        Action::List => {
            let v = api.list().await.map_err(err)?;
            let subs = v["data"].as_array().cloned().unwrap_or_default();
            let output = if as_json { v.to_string() } else { table(&subs) };
            Ok(Outcome { output, ok: true })
        }
        Action::Show { id } => {
            let v = api.show(&id).await.map_err(err)?;
            let output = if as_json {
                v.to_string()
            } else {
                table(&[v["data"].clone()])
            };
            Ok(Outcome { output, ok: true })
        }
        Action::Delete { id } => {
            api.delete(&id).await.map_err(err)?;
            let output = if as_json {
                json!({ "deleted": id }).to_string()
            } else {
                format!("deleted {id}\n")
            };
            Ok(Outcome { output, ok: true })
        }
        Action::Create { source, wait } => {
            let s = fic_source(config, &source)?;
            let (sink, method, mapping) = settings(s);
            let types = types_for(config, &source);
            if types.is_empty() {
                return Err(format!(
                    "no route for source {source:?} matches a Fatture in Cloud event type"
                ));
            }
            let created = api.create(&sink, &types, &method, &mapping).await.map_err(err)?;
            let id = created["data"]["id"]
                .as_str()
                .ok_or("FIC answered without a subscription id")?
                .to_owned();
            let warnings: Vec<String> = created["warnings"]
                .as_array()
                .map(|w| w.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let sub = wait_verified(api, &id, wait).await.map_err(err)?;
            report(&sub, &types, &warnings, as_json, &format!("created {id}"))
        }
        Action::Update { id, source } => {
            let s = fic_source(config, &source)?;
            let (sink, _, mapping) = settings(s);
            let types = types_for(config, &source);
            let v = api.update(&id, &sink, &types, &mapping).await.map_err(err)?;
            let output = if as_json {
                v.to_string()
            } else {
                format!("updated {id}: {} types\n", types.len())
            };
            Ok(Outcome { output, ok: true })
        }
        Action::Verify { id, source, wait } => {
            let s = fic_source(config, &source)?;
            let (_, method, _) = settings(s);
            api.verify(&id, &method).await.map_err(err)?;
            let sub = wait_verified(api, &id, wait).await.map_err(err)?;
            let types: Vec<String> = sub["data"]["types"]
                .as_array()
                .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            report(
                &sub,
                &types,
                &[],
                as_json,
                &format!("verification of {id} requested ({method})"),
            )
        }
    }
}

fn report(
    sub: &Value,
    types: &[String],
    warnings: &[String],
    as_json: bool,
    headline: &str,
) -> Result<Outcome, String> {
    let verified = sub["data"]["verified"].as_bool() == Some(true);
    if as_json {
        let v = json!({ "subscription": sub["data"], "warnings": warnings, "verified": verified });
        return Ok(Outcome {
            output: v.to_string(),
            ok: verified,
        });
    }
    let mut out = format!("{headline}\n");
    for w in warnings {
        let _ = writeln!(out, "warning from Fatture in Cloud: {w}");
    }
    let _ = writeln!(out, "types ({}):", types.len());
    for t in types {
        let _ = writeln!(out, "  {t}");
    }
    if verified {
        out.push_str("verified: yes\n");
    } else {
        let _ = writeln!(out, "{NOT_VERIFIED}");
    }
    Ok(Outcome {
        output: out,
        ok: verified,
    })
}
