//! Routing: which sinks an event goes to, by source name and event type.
//!
//! Type patterns match whole dot-separated segments: `*` is exactly one segment, `**` one or more
//! segments and only as the last segment; anything else matches literally. An event goes to the
//! union of the sinks of every matching rule, in first-seen order.

use std::fmt;

/// A compiled type pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

impl Pattern {
    /// Compiles `text`; the error says what is wrong.
    pub fn compile(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty pattern".into());
        }
        let parts: Vec<&str> = text.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let seg = match *part {
                "" => return Err(format!("empty segment in {text:?}")),
                "*" => Segment::One,
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("'**' may only be the last segment in {text:?}")),
                p if p.contains('*') => {
                    return Err(format!(
                        "wildcards match whole segments: {p:?} in {text:?} mixes '*' with text"
                    ))
                }
                p => Segment::Literal(p.to_owned()),
            };
            segments.push(seg);
        }
        Ok(Pattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// Whether `ty` matches.
    pub fn matches(&self, ty: &str) -> bool {
        let mut parts = ty.split('.');
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Rest => {
                    debug_assert_eq!(i + 1, self.segments.len());
                    return parts.next().is_some();
                }
                Segment::One => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if parts.next() != Some(l.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `[[routes]]` rule, compiled, with sink names resolved to indices.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Only this source, if set.
    pub source: Option<String>,
    /// Type patterns (any matches).
    pub types: Vec<Pattern>,
    /// Indices into the sink list.
    pub sinks: Vec<usize>,
    /// Fetch the Fatture in Cloud resources behind the event's ids before publishing.
    pub enrich: bool,
}

/// What to do with an event no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmatched {
    /// Answer 202 `dropped`, publish nothing.
    Drop,
    /// Send to these sinks (indices).
    Route(Vec<usize>),
}

/// The compiled routing table.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<Rule>,
    unmatched: Unmatched,
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish to these sinks (indices, no duplicates).
    Sinks(Vec<usize>),
    /// No rule matched and the policy is `drop`.
    Drop,
}

impl Router {
    /// A router over compiled rules.
    pub fn new(rules: Vec<Rule>, unmatched: Unmatched) -> Self {
        Router { rules, unmatched }
    }

    /// The rules, in configuration order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The unmatched policy.
    pub fn unmatched(&self) -> &Unmatched {
        &self.unmatched
    }

    /// Whether sink `index` can receive events from any of `sources`.
    pub fn can_reach(&self, sources: &[&str], index: usize) -> bool {
        let by_rule = self
            .rules
            .iter()
            .any(|r| r.sinks.contains(&index) && r.source.as_deref().is_none_or(|s| sources.contains(&s)));
        by_rule || matches!(&self.unmatched, Unmatched::Route(s) if s.contains(&index))
    }

    /// Whether a matching rule asks for enrichment.
    pub fn enrich(&self, source: &str, ty: &str) -> bool {
        self.rules.iter().any(|r| {
            r.enrich
                && r.source.as_deref().is_none_or(|s| s == source)
                && r.types.iter().any(|p| p.matches(ty))
        })
    }

    /// Decides where an event of type `ty` from source `source` goes.
    pub fn route(&self, source: &str, ty: &str) -> Decision {
        let mut sinks: Vec<usize> = Vec::new();
        let mut matched = false;
        for rule in &self.rules {
            if rule.source.as_deref().is_some_and(|s| s != source) {
                continue;
            }
            if rule.types.iter().any(|p| p.matches(ty)) {
                matched = true;
                for s in &rule.sinks {
                    if !sinks.contains(s) {
                        sinks.push(*s);
                    }
                }
            }
        }
        if matched {
            return Decision::Sinks(sinks);
        }
        match &self.unmatched {
            Unmatched::Drop => Decision::Drop,
            Unmatched::Route(s) => Decision::Sinks(s.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("a.b.c", "a.b.c.d", false),
            ("a.*.c", "a.x.c", true),
            ("a.*.c", "a.x.y.c", false),
            ("a.*", "a", false),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.**", "a", false),
            ("a.**", "a.b", true),
            ("a.**", "a.b.c.d", true),
            ("**", "anything.at.all", true),
            ("*", "one", true),
            ("*", "one.two", false),
            ("a.*.c", "a..c", false),
            (
                "it.fattureincloud.webhooks.issued_documents.*.create",
                "it.fattureincloud.webhooks.issued_documents.invoices.create",
                true,
            ),
            (
                "it.fattureincloud.webhooks.issued_documents.*.create",
                "it.fattureincloud.webhooks.issued_documents.invoices.delete",
                false,
            ),
        ];
        for (p, t, want) in cases {
            let pat = Pattern::compile(p).expect(p);
            assert_eq!(pat.matches(t), *want, "{p} vs {t}");
        }
    }

    #[test]
    fn bad_patterns() {
        for bad in ["", "a..b", "**.a", "a.**.b", "a*", "a.b*c", "."] {
            assert!(Pattern::compile(bad).is_err(), "{bad:?}");
        }
    }

    fn rule(source: Option<&str>, types: &[&str], sinks: &[usize]) -> Rule {
        Rule {
            source: source.map(str::to_owned),
            types: types
                .iter()
                .map(|t| Pattern::compile(t).expect("pattern"))
                .collect(),
            sinks: sinks.to_vec(),
            enrich: false,
        }
    }

    #[test]
    fn union_of_matching_rules_and_source_filter() {
        let router = Router::new(
            vec![
                rule(None, &["a.**"], &[0, 1]),
                rule(Some("fic"), &["a.b"], &[1, 2]),
                rule(Some("other"), &["a.b"], &[3]),
            ],
            Unmatched::Drop,
        );
        assert_eq!(router.route("fic", "a.b"), Decision::Sinks(vec![0, 1, 2]));
        assert_eq!(router.route("x", "a.b"), Decision::Sinks(vec![0, 1]));
        assert_eq!(router.route("fic", "z"), Decision::Drop);
        let router = Router::new(vec![], Unmatched::Route(vec![4]));
        assert_eq!(router.route("fic", "z"), Decision::Sinks(vec![4]));
    }
}
