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
    /// At render time, a URL path segment would be `.` or `..` (the segment).
    #[error("the rendered URL path has a dot segment {0:?}")]
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
    /// fragment of its own. A rendered path with a `.` or `..` segment, which URL parsers
    /// resolve as a step up even when encoded, is refused.
    pub fn render_url(&self, event: &Event) -> Result<String, TemplateError> {
        let out = self.render_with(event, percent_encode)?;
        // Dots are not encoded (they are unreserved), so fields — alone, together, or next to a
        // literal dot — can still make a `.` or `..` segment, which URL parsers resolve as a
        // step (`%2e` too): any in the rendered path is refused.
        let after_scheme = out.find("://").map_or(0, |i| i + 3);
        let path_start = out[after_scheme..].find('/').map(|i| after_scheme + i);
        if let Some(start) = path_start {
            let path = &out[start..];
            let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
            for segment in path.split('/') {
                let decoded = segment.replace("%2e", ".").replace("%2E", ".");
                if decoded == "." || decoded == ".." {
                    return Err(TemplateError::DotSegment(segment.to_owned()));
                }
            }
        }
        Ok(out)
    }

    /// Whether a field stands in the scheme or authority (host, port, user) of a URL template:
    /// an event could then choose where a sink sends its credentials.
    pub fn has_field_in_authority(&self) -> bool {
        let mut seen = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => seen.push_str(l),
                Part::Field(_) => {
                    let Some(i) = seen.find("://") else {
                        return true; // in the scheme
                    };
                    if !seen[i + 3..].contains(['/', '?', '#']) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

/// `value` with every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        assert_eq!(t.render_url(&e), Err(TemplateError::DotSegment("..".into())));
        // Dot segments made of a literal dot and a field, or of two fields, are refused too.
        for src in [
            "http://h/x/.{subject}/y",
            "http://h/x/{subject}{subject}/y",
            "http://h/{subject}./",
        ] {
            let mut e = event();
            e.subject = Some(".".into());
            let t = Template::compile(src).expect("compile");
            assert!(
                matches!(t.render_url(&e), Err(TemplateError::DotSegment(_))),
                "{src}"
            );
        }
        let mut e = event();
        e.id = "1&token=2#f".into();
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
    fn fields_in_the_authority_are_found() {
        for (src, want) in [
            ("http://{subject}/hooks", true),
            ("https://{hbsource}.consumer.example/", true),
            ("http://h:{id}/", true),
            ("{type}://h/", true),
            ("http://h/{subject}", false),
            ("http://h?x={id}", false),
            ("http://h", false),
        ] {
            assert_eq!(
                Template::compile(src).expect(src).has_field_in_authority(),
                want,
                "{src}"
            );
        }
    }

    #[test]
    fn escape_applies_to_values_only() {
        let t = Template::compile("a.{subject}").expect("compile");
        let out = t.render_with(&event(), |v| v.replace(':', "_")).expect("render");
        assert_eq!(out, "a.company_7");
    }
}
