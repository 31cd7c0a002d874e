//! Templates over envelope fields, compiled once at start-up: `fic.{type}`, `{subject}`,
//! `{hbsource}.{partitionkey}`. `{{` and `}}` stand for literal braces.

use std::fmt;

use crate::Event;

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("unclosed '{{' at byte {0}")]
    Unclosed(usize),
    /// A `}` without its `{`.
    #[error("unmatched '}}' at byte {0}")]
    Unmatched(usize),
    /// A field name that no CloudEvents attribute can have.
    #[error("invalid field name {0:?}: CloudEvents attribute names are lower-case letters and digits")]
    BadField(String),
    /// At render time, the event has no such attribute.
    #[error("the event has no attribute {0:?}")]
    Missing(String),
    /// At render time, a URL path segment would be `.` or `..`.
    #[error("the value of {0:?} would be a dot segment of the URL path")]
    DotSegment(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `source`. Field names are CloudEvents attribute names (`type`, `source`,
    /// `subject`, `id`, `time`, …) or extension names (`hbsource`, `partitionkey`, …).
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Unmatched(i)),
                '{' => {
                    let rest = &source[i + 1..];
                    let end = rest.find('}').ok_or(TemplateError::Unclosed(i))?;
                    let name = &rest[..end];
                    let valid = !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                    if !valid {
                        return Err(TemplateError::BadField(name.to_owned()));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name.to_owned()));
                    // Skip the field name and the closing brace.
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// The text the template was compiled from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Field names the template uses, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Renders the template for `event`; a field the event lacks is an error.
    pub fn render(&self, event: &Event) -> Result<String, TemplateError> {
        self.render_with(event, |s| s.to_owned())
    }

    /// Renders with each field value passed through `escape` first (e.g. NATS subject tokens).
    pub fn render_with(
        &self,
        event: &Event,
        escape: impl Fn(&str) -> String,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Field(f) => {
                    let value = event
                        .attribute(f)
                        .ok_or_else(|| TemplateError::Missing(f.clone()))?;
                    out.push_str(&escape(&value));
                }
            }
        }
        Ok(out)
    }
}

impl Template {
    /// Renders a URL template: each field value is percent-encoded (every byte but RFC 3986's
    /// unreserved characters), so a value can never add a path segment, a query parameter or a
    /// fragment of its own. A value that is a whole path segment of dots (`.`, `..`), which URL
    /// parsers resolve as a step up even when encoded, is refused.
    pub fn render_url(&self, event: &Event) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut in_path = true;
        for (i, part) in self.parts.iter().enumerate() {
            match part {
                Part::Literal(l) => {
                    in_path &= !l.contains(['?', '#']);
                    out.push_str(l);
                }
                Part::Field(f) => {
                    let value = event
                        .attribute(f)
                        .ok_or_else(|| TemplateError::Missing(f.clone()))?;
                    let whole_segment = out.ends_with('/')
                        && self.parts.get(i + 1).is_none_or(|next| match next {
                            Part::Literal(l) => l.starts_with(['/', '?', '#']),
                            Part::Field(_) => false,
                        });
                    if in_path && whole_segment && !value.is_empty() && value.bytes().all(|b| b == b'.') {
                        return Err(TemplateError::DotSegment(f.clone()));
                    }
                    percent_encode_into(&value, &mut out);
                }
            }
        }
        Ok(out)
    }
}

/// Appends `value` with every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`.
fn percent_encode_into(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::new("42", "https://api.example", "it.fic.clients.create");
        e.subject = Some("company:7".into());
        e.extensions.insert("hbsource".into(), "fic".into());
        e
    }

    #[test]
    fn renders_fields_and_literals() {
        let cases = [
            ("fic.{type}", "fic.it.fic.clients.create"),
            ("{subject}", "company:7"),
            ("{hbsource}-{id}", "fic-42"),
            ("plain", "plain"),
            ("{{literal}}.{id}", "{literal}.42"),
            ("é{id}ü", "é42ü"),
        ];
        for (src, want) in cases {
            let t = Template::compile(src).expect(src);
            assert_eq!(t.render(&event()).expect(src), want, "{src}");
        }
    }

    #[test]
    fn compile_errors() {
        assert_eq!(Template::compile("a{type"), Err(TemplateError::Unclosed(1)));
        assert_eq!(Template::compile("a}b"), Err(TemplateError::Unmatched(1)));
        assert_eq!(
            Template::compile("{Type}"),
            Err(TemplateError::BadField("Type".into()))
        );
        assert_eq!(
            Template::compile("{}"),
            Err(TemplateError::BadField(String::new()))
        );
    }

    #[test]
    fn missing_field_is_an_error() {
        let t = Template::compile("{partitionkey}").expect("compile");
        assert_eq!(
            t.render(&event()),
            Err(TemplateError::Missing("partitionkey".into()))
        );
    }

    #[test]
    fn url_values_cannot_steer_the_url() {
        let t = Template::compile("http://h/hooks/{subject}?c={id}").expect("compile");
        let mut e = event();
        e.subject = Some("../../admin?x=".into());
        e.id = "1&token=2#f".into();
        assert_eq!(
            t.render_url(&e).expect("render"),
            "http://h/hooks/..%2F..%2Fadmin%3Fx%3D?c=1%26token%3D2%23f"
        );
        e.subject = Some("..".into());
        assert_eq!(t.render_url(&e), Err(TemplateError::DotSegment("subject".into())));
        e.subject = Some("a b/ü".into());
        assert_eq!(
            t.render_url(&e).expect("render"),
            "http://h/hooks/a%20b%2F%C3%BC?c=1%26token%3D2%23f"
        );
        // Dots inside a segment are plain text; in the query they are harmless.
        let t = Template::compile("http://h/{type}.json?v={subject}").expect("compile");
        e.subject = Some("..".into());
        assert_eq!(
            t.render_url(&e).expect("render"),
            "http://h/it.fic.clients.create.json?v=.."
        );
    }

    #[test]
    fn escape_applies_to_values_only() {
        let t = Template::compile("a.{subject}").expect("compile");
        let out = t.render_with(&event(), |v| v.replace(':', "_")).expect("render");
        assert_eq!(out, "a.company_7");
    }
}
