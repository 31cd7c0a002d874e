//! The broker sinks' message builders (NATS, RabbitMQ, Kafka, HTTP) on hostile events: every field
//! that reaches a header (id, source, type, subject, content type, extensions, kept request
//! headers, template headers) is arbitrary bytes. A builder may refuse an event (a permanent
//! error naming the field); it must never panic, and what it builds must be sendable: NATS
//! header values printable ASCII (async-nats panics on CR/LF), AMQP short strings at most 255
//! bytes (lapin panics beyond), the HTTP URL parseable or refused.
#![no_main]

use hookbridge_sink_core::{Event, ExtensionValue, Mode, Template};
use libfuzzer_sys::fuzz_target;

fn text(part: Option<&[u8]>) -> String {
    String::from_utf8_lossy(part.unwrap_or_default()).into_owned()
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by 0xFF (never in UTF-8), so each can hold any text, line breaks included.
    let mut parts = data.split(|b| *b == 0xFF);
    let mut next = || text(parts.next());
    let mut event = Event::new(next(), next(), next());
    event.subject = Some(next());
    event.datacontenttype = Some(next());
    event.dataschema = Some(next());
    event.time = Some(next());
    let ext_value = next();
    event
        .extensions
        .insert("traceparent".into(), ExtensionValue::String(ext_value.clone()));
    event
        .extensions
        .insert("partitionkey".into(), ExtensionValue::String(next()));
    event
        .extensions
        .insert("hbsource".into(), ExtensionValue::String(next()));
    let kept = (next(), next());
    event.headers.push(kept);
    event.data = Some(bytes::Bytes::from(next().into_bytes()));
    let header_name = next();

    let nats_headers = vec![
        (
            "x-subject".to_owned(),
            Template::compile("{subject}").expect("template"),
        ),
        (header_name.clone(), Template::compile("{id}").expect("template")),
    ];
    for mode in [Mode::Binary, Mode::Structured] {
        for jetstream in [true, false] {
            let layout = hookbridge_sink_nats::message::Layout {
                subject: Template::compile("hooks.{type}.{subject}").expect("template"),
                headers: nats_headers.clone(),
                mode,
                jetstream,
            };
            if let Ok(m) = layout.build(&event) {
                let block: usize = m
                    .headers
                    .iter()
                    .map(|(k, vs)| {
                        vs.iter()
                            .map(|v| AsRef::<str>::as_ref(k).len() + v.as_str().len() + 4)
                            .sum::<usize>()
                    })
                    .sum();
                assert!(
                    block + 12 <= hookbridge_sink_nats::message::MAX_HEADER_BLOCK,
                    "{block}"
                );
                for (_, values) in m.headers.iter() {
                    for v in values {
                        assert!(
                            v.as_str().bytes().all(|b| (0x20..0x7f).contains(&b)),
                            "{:?}",
                            v.as_str()
                        );
                    }
                }
            }
        }
        let layout = hookbridge_sink_rabbitmq::message::Layout {
            exchange: Template::compile("hooks").expect("template"),
            routing_key: Template::compile("{hbsource}.{type}").expect("template"),
            headers: vec![(
                header_name.clone(),
                Template::compile("{subject}").expect("template"),
            )],
            mode,
            persistent: true,
            expiration_ms: Some(1000),
            priority: Some(1),
        };
        if let Ok(m) = layout.build(&event, 0) {
            let p = &m.properties;
            assert!(p.message_id().as_ref().is_none_or(|s| s.as_str().len() <= 255));
            assert!(p.content_type().as_ref().is_none_or(|s| s.as_str().len() <= 255));
            if let Some(h) = p.headers() {
                assert!(h.inner().keys().all(|k| k.as_str().len() <= 255));
            }
        }
        let layout = hookbridge_sink_kafka::message::Layout {
            topic: Template::compile("hooks.{type}").expect("template"),
            key: None,
            headers: vec![(
                header_name.clone(),
                Template::compile("{subject}").expect("template"),
            )],
            mode,
        };
        if let Ok(r) = layout.build(&event) {
            // librdkafka refuses what Kafka cannot hold; the builder refuses it first.
            assert!(
                hookbridge_sink_kafka::message::legal_topic(&r.topic),
                "{:?}",
                r.topic
            );
            assert!(r.topic.starts_with("hooks."), "{:?}", r.topic);
            assert!(r.headers.iter().all(|(k, _)| !k.is_empty()));
        }
        let layout = hookbridge_sink_http::request::Layout {
            url: Template::compile("http://127.0.0.1:1/in/{subject}?id={id}").expect("template"),
            headers: vec![(
                header_name.clone(),
                Template::compile("{type}").expect("template"),
            )],
            mode,
            signing_key: Some(vec![1, 2, 3]),
        };
        if let Ok(out) = layout.build(&event, 1_700_000_000) {
            // Every value is percent-encoded: the URL parses and keeps its host and path prefix.
            let url = http::Uri::try_from(out.url.as_str()).expect("a URL that parses");
            assert_eq!(url.host(), Some("127.0.0.1"));
            assert!(url.path().starts_with("/in/"), "{}", out.url);
        }
    }
});
