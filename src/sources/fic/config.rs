//! The settings of a `fattureincloud` source: `public_url`, `verify` (key, allow-lists,
//! challenge), `api` (enrichment and the subscriptions tool) and `subscription`.

use std::sync::Arc;
use std::time::Duration;

use super::enrich::EnrichConfig;
use super::verify::{FicVerifier, FIC_PUBLIC_KEY_PEM};
use super::Fic;
use crate::settings::raw::{FicApiRaw, FicVerifyRaw, IdText, SubscriptionRaw};
use crate::settings::secret::SECRET_HINT;
use crate::settings::Checker;
use crate::sources::verifiers::read_key;
use crate::sources::{Checked, KindCheck};

pub(super) fn check(k: &mut KindCheck<'_, '_>) -> Option<Checked> {
    let enrichment = match &k.raw.api {
        None => Some(None),
        Some(api) => check_api(k.c, k.key, k.name, api).map(Some),
    };
    let subscription = check_subscription(k.c, k.key, k.raw.subscription.as_ref());
    let verifier = check_verify(k.c, k.key, k.raw.verify.is_some(), k.raw.public_url.as_deref());
    let verifier = Arc::new(verifier?);
    Some(Checked {
        verifier: verifier.clone(),
        provider: Arc::new(Fic {
            verifier,
            subscription,
            enrichment: enrichment?,
        }),
    })
}

fn check_api(c: &mut Checker<'_>, key: &str, name: &str, api: &FicApiRaw) -> Option<EnrichConfig> {
    let on_unavailable = api.on_unavailable.clone().unwrap_or_else(|| "publish".into());
    if !["publish", "retry"].contains(&on_unavailable.as_str()) {
        c.error(
            format!("{key}.api.on_unavailable"),
            format!("{on_unavailable:?}: use publish or retry"),
            None,
        );
    }
    if api.max_concurrency == Some(0) {
        c.error(format!("{key}.api.max_concurrency"), "must be at least 1", None);
    }
    if api.cache_max_entries == Some(0) {
        c.error(
            format!("{key}.api.cache_max_entries"),
            "must be at least 1 (cache_ttl = \"0s\" turns the cache off)",
            None,
        );
    }
    match api.token.resolve() {
        Ok(token) => Some(EnrichConfig {
            source: name.to_owned(),
            base_url: api
                .base_url
                .clone()
                .unwrap_or_else(|| super::api::DEFAULT_BASE_URL.into()),
            token: String::from_utf8_lossy(token.expose()).into_owned(),
            company_id: api.company_id.map(|c| c.to_string()),
            retry_when_unavailable: on_unavailable == "retry",
            cache_ttl: api.cache_ttl.map_or(Duration::from_secs(30), |d| d.0),
            cache_max_entries: api.cache_max_entries.unwrap_or(10_000),
            max_concurrency: api.max_concurrency.unwrap_or(4),
            timeout: api.timeout.map_or(Duration::from_secs(2), |d| d.0),
        }),
        Err(m) => {
            c.error(format!("{key}.api.token"), m, Some(SECRET_HINT.into()));
            None
        }
    }
}

fn check_subscription(c: &mut Checker<'_>, key: &str, sub: Option<&SubscriptionRaw>) -> (String, String) {
    let method = sub
        .and_then(|s| s.verification_method.clone())
        .unwrap_or_else(|| "header".into());
    let mapping = sub
        .and_then(|s| s.mapping.clone())
        .unwrap_or_else(|| "binary".into());
    if !["header", "query"].contains(&method.as_str()) {
        c.error(
            format!("{key}.subscription.verification_method"),
            format!("{method:?}: use header or query"),
            None,
        );
    }
    if !["binary", "structured"].contains(&mapping.as_str()) {
        c.error(
            format!("{key}.subscription.mapping"),
            format!("{mapping:?}: use binary or structured"),
            None,
        );
    }
    (method, mapping)
}

fn check_verify(
    c: &mut Checker<'_>,
    key: &str,
    has_verify: bool,
    public_url: Option<&str>,
) -> Option<FicVerifier> {
    let raw: FicVerifyRaw = if has_verify {
        c.extract(&format!("{key}.verify"))?
    } else {
        FicVerifyRaw::default()
    };
    let url_ok = public_url.is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"));
    if !url_ok {
        c.error(
            format!("{key}.public_url"),
            match public_url {
                None => "missing required key `public_url`".to_owned(),
                Some(u) => format!("invalid URL {u:?}"),
            },
            Some("the URL Fatture in Cloud calls (the subscription's sink), e.g. \"https://hooks.example.com/webhooks/fic\"; FIC puts it in the token's aud".into()),
        );
    }
    let pem = match &raw.public_key {
        None => Some(FIC_PUBLIC_KEY_PEM.as_bytes().to_vec()),
        Some(k) => read_key(c, &format!("{key}.verify.public_key"), k),
    };
    let mut verifier = match pem.map(|p| FicVerifier::new(&p, public_url.unwrap_or_default().to_owned())) {
        Some(Ok(v)) => v,
        Some(Err(m)) => {
            c.error(
                format!("{key}.verify.public_key"),
                m,
                Some("an ES256 (P-256) public key, PEM \"BEGIN PUBLIC KEY\"".into()),
            );
            return None;
        }
        None => return None,
    };
    if let Some(l) = c.whole_seconds(&format!("{key}.verify.leeway"), raw.leeway) {
        verifier.leeway = l;
    }
    check_allow_lists(c, key, &raw);
    verifier.app_ids = raw.app_ids.unwrap_or_default().iter().map(IdText::text).collect();
    verifier.companies = raw
        .companies
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let t = c.text();
            if t.starts_with("company:") {
                t
            } else {
                format!("company:{t}")
            }
        })
        .collect();
    verifier.challenge_requires_token = raw.challenge_requires_token.unwrap_or(true);
    verifier.challenge_checks_allow_lists = raw.challenge_checks_allow_lists.unwrap_or(false);
    url_ok.then_some(verifier)
}

/// The allow-lists (`companies`, `app_ids`, `allow_any_company`) and the challenge's checks:
/// one of the lists, or the explicit opt-out, and no setting that would do nothing.
fn check_allow_lists(c: &mut Checker<'_>, key: &str, raw: &FicVerifyRaw) {
    let unlisted =
        raw.app_ids.as_ref().is_none_or(Vec::is_empty) && raw.companies.as_ref().is_none_or(Vec::is_empty);
    if !unlisted && raw.allow_any_company == Some(true) {
        c.error(
            format!("{key}.verify.allow_any_company"),
            "allow_any_company = true and an allow-list (companies or app_ids) contradict each other: the list would still apply",
            Some("keep the list and remove allow_any_company, or the reverse".into()),
        );
    }
    if raw.challenge_checks_allow_lists == Some(true) && raw.challenge_requires_token == Some(false) {
        c.error(
            format!("{key}.verify.challenge_checks_allow_lists"),
            "has no effect with challenge_requires_token = false (there is no token to check)",
            None,
        );
    }
    if unlisted && raw.allow_any_company != Some(true) {
        c.error(
            format!("{key}.verify.companies"),
            "Fatture in Cloud signs every customer's events with the same key: without an allow-list any FIC customer can subscribe this URL and publish into your brokers",
            Some("list your companies (companies = [123456]) or applications (app_ids = [\"…\"]), or set allow_any_company = true".into()),
        );
    }
}
