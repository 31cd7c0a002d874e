use super::*;
use http::{HeaderName, HeaderValue};

fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_bytes(v).expect("value"),
        );
    }
    h
}

const BASE: &[(&str, &[u8])] = &[
    ("ce-specversion", b"1.0"),
    ("ce-id", b"e1"),
    ("ce-source", b"urn:test"),
    ("ce-type", b"com.example.a"),
];

fn with(extra: &[(&'static str, &'static [u8])]) -> HeaderMap {
    let mut all = BASE.to_vec();
    all.extend_from_slice(extra);
    headers(&all)
}

#[test]
fn binary_mode_keeps_body_and_decodes_percent_encoding() {
    let h = with(&[
        ("content-type", b"application/json"),
        ("ce-subject", b"caf%C3%A9%20b%c3%a0r"),
        ("ce-time", b"2023-04-04T12:54:21+02:00"),
        ("ce-partitionkey", b"k1"),
    ]);
    let body = Bytes::from_static(b"{ \"x\": 1 }");
    let events = decode(&h, &body).expect("decode");
    let e = &events[0];
    assert_eq!(e.id, "e1");
    assert_eq!(e.subject.as_deref(), Some("café bàr"));
    assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
    assert_eq!(e.data.as_deref(), Some(&b"{ \"x\": 1 }"[..]));
    assert_eq!(e.extensions["partitionkey"], ExtensionValue::from("k1"));
}

#[test]
fn binary_mode_errors() {
    let cases: &[(HeaderMap, &str, &str)] = &[
        (headers(&BASE[1..]), "missing_attribute", "specversion"),
        (headers(&[BASE[0], BASE[1], BASE[2]]), "missing_attribute", "type"),
        (headers(&[BASE[0], BASE[2], BASE[3]]), "missing_attribute", "id"),
        (with(&[("ce-subject", b"%FF%FE")]), "malformed", "subject"),
        (
            with(&[("ce-subject", b"a"), ("ce-subject", b"b")]),
            "malformed",
            "subject",
        ),
        (with(&[("ce-time", b"yesterday")]), "malformed", "time"),
        (with(&[("ce-bad_name", b"x")]), "malformed", "bad_name"),
        (
            with(&[("ce-datacontenttype", b"text/plain")]),
            "malformed",
            "datacontenttype",
        ),
        (
            headers(&[("ce-specversion", b"0.3"), BASE[1], BASE[2], BASE[3]]),
            "malformed",
            "specversion",
        ),
        (
            headers(&[BASE[0], ("ce-id", b""), BASE[2], BASE[3]]),
            "malformed",
            "id",
        ),
    ];
    for (h, code, field) in cases {
        let err = decode(h, &Bytes::new()).expect_err(field);
        assert_eq!(
            (err.code.as_str(), err.field.as_deref()),
            (*code, Some(*field)),
            "{h:?}"
        );
    }
}

#[test]
fn structured_mode_keeps_data_text_exactly() {
    let h = headers(&[("content-type", b"application/cloudevents+json; charset=utf-8")]);
    let body = Bytes::from_static(
        br#"{"specversion":"1.0","id":"s1","source":"urn:s","type":"t.x","subject":"sub",
            "datacontenttype":"application/json","num":7,"flag":true,"data":{"b" : [1,  2], "a":"\u00e9"}}"#,
    );
    let e = &decode(&h, &body).expect("decode")[0];
    assert_eq!(e.data.as_deref(), Some(&br#"{"b" : [1,  2], "a":"\u00e9"}"#[..]));
    assert_eq!(e.extensions["num"], ExtensionValue::Integer(7));
    assert_eq!(e.extensions["flag"], ExtensionValue::Boolean(true));
    assert_eq!(e.subject.as_deref(), Some("sub"));
}

#[test]
fn structured_text_and_base64_data() {
    let text = decode_structured(
        br#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"hi"}"#,
    )
    .expect("text");
    assert_eq!(text.data.as_deref(), Some(&b"hi"[..]));
    let bin = decode_structured(
        br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"AJ+Slg=="}"#,
    )
    .expect("b64");
    assert_eq!(bin.data.as_deref(), Some(&[0u8, 159, 146, 150][..]));
}

#[test]
fn structured_errors() {
    let cases: &[(&[u8], &str, Option<&str>)] = &[
        (b"not json", "malformed", None),
        (b"[1]", "malformed", None),
        (
            br#"{"specversion":"1.0","id":"1","source":"s"}"#,
            "missing_attribute",
            Some("type"),
        ),
        (
            br#"{"specversion":"1.0","id":1,"source":"s","type":"t"}"#,
            "malformed",
            Some("id"),
        ),
        (
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","Bad":1}"#,
            "malformed",
            Some("Bad"),
        ),
        (
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","ext":{"a":1}}"#,
            "malformed",
            Some("ext"),
        ),
        (
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}"#,
            "malformed",
            Some("data"),
        ),
        (
            br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"!!"}"#,
            "malformed",
            Some("data_base64"),
        ),
    ];
    for (body, code, field) in cases {
        let err = decode_structured(body).expect_err(std::str::from_utf8(body).unwrap_or("?"));
        assert_eq!(
            (err.code.as_str(), err.field.as_deref()),
            (*code, *field),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn deeply_nested_json_is_malformed_not_a_crash() {
    let mut body = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', 20_000));
    body.extend(std::iter::repeat_n(b']', 20_000));
    body.push(b'}');
    let err = decode_structured(&body).expect_err("nested");
    assert_eq!(err.code.as_str(), "malformed");
    assert!(err.to_string().contains("nested deeper"), "{err}");
    let mut batch = b"[".to_vec();
    batch.extend_from_slice(&body);
    batch.push(b']');
    assert!(decode_batch(&batch).is_err());
    // Exactly at the limit (the envelope is one level), with brackets inside strings ignored.
    let mut ok =
        br#"{"specversion":"1.0","id":"1","source":"s","type":"t","x":"[[[{{{\"[[","data":"#.to_vec();
    ok.extend(std::iter::repeat_n(b'[', MAX_JSON_DEPTH - 1));
    ok.extend(std::iter::repeat_n(b']', MAX_JSON_DEPTH - 1));
    ok.push(b'}');
    decode_structured(&ok).expect("127 levels inside the envelope are fine");
}

#[test]
fn batch_mode() {
    let h = headers(&[("content-type", b"application/cloudevents-batch+json")]);
    let body = Bytes::from_static(
        br#"[{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"n":1}},
            {"specversion":"1.0","id":"2","source":"s","type":"t","data":{"n":2}}]"#,
    );
    let events = decode(&h, &body).expect("batch");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].data.as_deref(), Some(&br#"{"n":2}"#[..]));
    let err = decode(&h, &Bytes::from_static(b"[]")).expect_err("empty");
    assert_eq!(err.code.as_str(), "malformed");
    let err = decode(
        &h,
        &Bytes::from_static(br#"[{"specversion":"1.0","id":"1","source":"s"}]"#),
    )
    .expect_err("bad entry");
    assert_eq!(err.field.as_deref(), Some("type"));
    assert!(err.message.starts_with("event [0]"), "{}", err.message);
}

#[test]
fn a_batch_over_the_limit_is_refused() {
    let h = headers(&[("content-type", b"application/cloudevents-batch+json")]);
    let one = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
    let batch = |n: usize| Bytes::from(format!("[{}]", vec![one; n].join(",")));
    assert_eq!(
        decode(&h, &batch(MAX_BATCH_EVENTS)).expect("at the limit").len(),
        MAX_BATCH_EVENTS
    );
    let err = decode(&h, &batch(MAX_BATCH_EVENTS + 1)).expect_err("over");
    assert_eq!(err.code.as_str(), "malformed");
    assert!(err.message.contains("at most 100"), "{}", err.message);
    // ~15,000 events in a 1 MiB body used to fan out into as many concurrent publishes.
    assert!(decode(&h, &batch(15_000)).is_err());
}

#[test]
fn modes_by_content_type() {
    let m = |ct: &[u8]| mode_of(&headers(&[("content-type", ct)]));
    assert_eq!(m(b"application/cloudevents+json"), BindingMode::Structured);
    assert_eq!(m(b"Application/CloudEvents+json"), BindingMode::Structured);
    assert_eq!(m(b"application/cloudevents-batch+json"), BindingMode::Batch);
    assert_eq!(m(b"application/json"), BindingMode::Binary);
    assert_eq!(mode_of(&HeaderMap::new()), BindingMode::Binary);
}

#[test]
fn stray_percent_signs_are_malformed() {
    for bad in [&b"50%"[..], b"%zz", b"%4", b"a%g1"] {
        let h = with(&[("ce-subject", bad)]);
        let e = decode(&h, &Bytes::new()).expect_err("stray %");
        assert!(e.to_string().contains("%XX"), "{e}");
    }
    let h = with(&[("ce-subject", b"100%25")]);
    let events = decode(&h, &Bytes::new()).expect("escaped %");
    assert_eq!(events[0].subject.as_deref(), Some("100%"));
}
