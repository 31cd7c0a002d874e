//! Template compilation and rendering (sink topics, subjects, keys, URLs, headers) and mapping
//! templates, on arbitrary text; rendering uses an event with every attribute and extensions.
#![no_main]

use hookbridge::normalize::mapping::parse_template;
use hookbridge_sink_core::{Event, ExtensionValue, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_template(text);
    let Ok(template) = Template::compile(text) else {
        return;
    };
    let mut event = Event::new("id-1", "urn:fuzz", "com.example.thing.created");
    event.subject = Some("sub ject.*>".into());
    event.time = Some("2026-01-01T00:00:00Z".into());
    event
        .extensions
        .insert("partitionkey".into(), ExtensionValue::String("pk".into()));
    event
        .extensions
        .insert("hbsource".into(), ExtensionValue::String("events".into()));
    event.extensions.insert("n".into(), ExtensionValue::Integer(-7));
    let _ = template.render(&event);
    let _ = template.render_with(&event, |s| s.replace(['.', '*', '>'], "_"));
    let _ = template.render_url(&event);
    let _ = template.to_string();
});
