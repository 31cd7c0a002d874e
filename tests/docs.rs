//! The README against the code: its reply-code tables, in both directions (every documented code
//! exists with the documented status, every code the server can answer is documented), so the
//! next drift fails CI instead of reaching a user.

use std::collections::BTreeSet;

use hookbridge::code::{Code, HTTP_LAYER, NEVER, SUCCESS_ORDER};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md")
}

/// The rows of the Markdown table whose header row starts with `header` (cells trimmed).
fn table(text: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines().map(str::trim).skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table headed {header:?} in the README");
    lines
        .skip(1) // |---|---|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// Every `backticked` word in `cell`, outside parentheses (which hold remarks such as
/// "(+ `field`)").
fn ticked(cell: &str) -> Vec<String> {
    let mut depth = 0usize;
    let outside: String = cell
        .chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => return depth == 0,
            }
            false
        })
        .collect();
    outside.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Every three-digit status in `cell`.
fn statuses(cell: &str) -> Vec<u16> {
    cell.split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3)
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Checks one table against the codes `answered` on its surface; returns the documented codes.
fn check_table(header: &str, answered: impl Fn(Code) -> bool) {
    let text = readme();
    let rows = table(&text, header);
    assert!(rows.len() > 3, "{header}: {rows:?}");
    let mut documented = BTreeSet::new();
    let mut layer = BTreeSet::new();
    for row in &rows {
        let [outcome, status, codes] = &row[..] else {
            panic!("{header}: a row without three cells: {row:?}");
        };
        let listed = statuses(status);
        if outcome == "never" {
            for s in &listed {
                assert!(
                    NEVER.contains(s),
                    "{s} documented as never but not in code::NEVER"
                );
            }
            assert!(status.contains("3xx"), "the never row must name 3xx: {status}");
            continue;
        }
        let names = ticked(codes);
        if names.is_empty() {
            assert_eq!(codes, "—", "{header}: {row:?}");
            layer.extend(listed.iter().copied());
            continue;
        }
        for name in names {
            let code = Code::ALL
                .iter()
                .find(|c| c.as_str() == name)
                .unwrap_or_else(|| panic!("{header}: documented code {name:?} does not exist"));
            assert!(
                answered(*code),
                "{header}: {name:?} is documented but not answered here"
            );
            assert!(
                listed.contains(&code.status().as_u16()),
                "{header}: {name:?} is answered {} but documented as {status:?}",
                code.status()
            );
            assert!(
                code.status().as_u16() != 503 || status.contains("Retry-After"),
                "{header}: a 503 row must promise Retry-After: {row:?}"
            );
            assert!(documented.insert(*code), "{header}: {name:?} documented twice");
        }
    }
    for code in Code::ALL.iter().filter(|c| answered(**c)) {
        assert!(
            documented.contains(code),
            "{header}: {code} ({}) is answered but not documented",
            code.status()
        );
    }
    if header.contains("code / status field") {
        assert_eq!(
            layer,
            HTTP_LAYER.into_iter().collect(),
            "the HTTP layer's own answers"
        );
    }
}

#[test]
fn the_delivery_contract_table_matches_the_codes_in_both_directions() {
    check_table("| outcome | status | code / status field |", |c| {
        c.surface().webhook()
    });
}

#[test]
fn the_admin_answers_table_matches_the_codes_in_both_directions() {
    check_table("| admin answer | status | code |", |c| c.surface().admin());
}

#[test]
fn the_documented_top_level_status_order_is_the_code_s() {
    let text = readme().split_whitespace().collect::<Vec<_>>().join(" ");
    let from = text
        .find("the top-level status is the first of")
        .expect("the README states the top-level status order");
    let sentence = &text[from..];
    let sentence = &sentence[..sentence.find("that any entry has").expect("end of sentence")];
    let documented = ticked(sentence);
    let code: Vec<String> = SUCCESS_ORDER.iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(documented, code);
}

/// `(name, type, labels, help)` of each row of the README's metrics table.
fn documented_metrics() -> Vec<(String, String, String, String)> {
    table(&readme(), "| metric | type | labels | what it counts |")
        .into_iter()
        .map(|row| {
            let [name, kind, labels, help] = &row[..] else {
                panic!("a metrics row without four cells: {row:?}");
            };
            (
                name.trim_matches('`').to_owned(),
                kind.clone(),
                labels.clone(),
                help.clone(),
            )
        })
        .collect()
}

fn catalogued_metrics() -> Vec<(String, String, String, String)> {
    hookbridge::metrics::FAMILIES
        .iter()
        .map(|f| {
            let labels = if f.labels.is_empty() {
                "—".to_owned()
            } else {
                f.labels.join(", ")
            };
            (
                f.name.to_owned(),
                f.kind.as_str().to_owned(),
                labels,
                f.help.to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_metrics_table_is_the_catalogue() {
    assert_eq!(documented_metrics(), catalogued_metrics());
}

/// Every `.rs` file under `dir`.
fn sources(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read");
            out.push((path, text));
        }
    }
}

#[test]
fn every_metric_the_code_emits_is_catalogued_and_every_catalogued_one_is_emitted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("sinks"), &mut files);
    let catalogue: BTreeSet<&str> = hookbridge::metrics::FAMILIES.iter().map(|f| f.name).collect();
    let mut emitted = BTreeSet::new();
    for (path, text) in &files {
        // The catalogue itself names every family; what counts is the code that records them.
        let text = match text.find("pub const FAMILIES") {
            Some(start) => {
                let end = start + text[start..].find("\n];").expect("end of FAMILIES");
                format!("{}{}", &text[..start], &text[end..])
            }
            None => text.clone(),
        };
        for piece in text.split("\"hookbridge_").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if piece[name.len()..].starts_with('"') {
                let full = format!("hookbridge_{name}");
                assert!(
                    catalogue.contains(full.as_str()),
                    "{} records {full}, which metrics::FAMILIES does not list",
                    path.display()
                );
                emitted.insert(full);
            }
        }
    }
    for name in catalogue {
        assert!(
            emitted.contains(name),
            "{name} is catalogued but nothing records it"
        );
    }
}

#[test]
fn every_family_has_a_help_line() {
    hookbridge::metrics::install().expect("recorder");
    for f in hookbridge::metrics::FAMILIES {
        let labels: Vec<(&str, &str)> = f.labels.iter().map(|l| (*l, "x")).collect();
        let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect();
        match f.kind {
            hookbridge::metrics::Kind::Counter => metrics::counter!(f.name, labels).increment(1),
            hookbridge::metrics::Kind::Gauge => metrics::gauge!(f.name, labels).set(1.0),
            hookbridge::metrics::Kind::Histogram => metrics::histogram!(f.name, labels).record(0.1),
        }
    }
    let text = hookbridge::metrics::render();
    for f in hookbridge::metrics::FAMILIES {
        assert!(
            text.contains(&format!("# HELP {} {}", f.name, f.help)),
            "no HELP line for {}:\n{text}",
            f.name
        );
        assert!(
            text.contains(&format!("# TYPE {} {}", f.name, f.kind.as_str())),
            "no TYPE line for {}",
            f.name
        );
    }
}

/// The provider table ("What each provider's signature covers") names every source kind of the
/// registry and no other, and its default dedup key is the kind's (`body digest` exactly for the
/// kinds that key duplicates on the body).
#[test]
fn the_provider_table_is_the_sources_registry() {
    let rows = table(&readme(), "| source kind | signed |");
    let mut documented = BTreeSet::new();
    for row in &rows {
        let kind = ticked(&row[0])
            .into_iter()
            .next()
            .expect("a `kind` in the first cell");
        let registered = hookbridge::sources::kind(&kind)
            .unwrap_or_else(|| panic!("the README documents {kind:?}, which is no source kind"));
        let body = row[3].contains("body digest");
        // `generic` may be set to the body; its default stays the id.
        if !row[3].starts_with("id (or") {
            assert_eq!(
                body, registered.dedup_on_body,
                "the default dedup key of {kind:?}: README says {:?}",
                row[3]
            );
        }
        documented.insert(kind);
    }
    let registry: BTreeSet<String> = hookbridge::sources::KINDS
        .iter()
        .map(|k| k.name.to_owned())
        .collect();
    assert_eq!(documented, registry, "README provider table vs sources::KINDS");
}
