//! The scan against serde_json: the bodies it reads, it reads as serde_json does.

use proptest::prelude::*;

use super::super::{BodyHints, JsonHints};

fn by_serde(body: &[u8]) -> Option<BodyHints> {
    serde_json::from_slice::<JsonHints<'_>>(body)
        .ok()
        .map(BodyHints::from)
}

fn by_scan(body: &[u8]) -> Option<BodyHints> {
    super::hints(body).map(BodyHints::from)
}

#[test]
fn the_bodies_apps_send_are_read_without_serde_and_as_serde_reads_them() {
    for body in [
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,
            "messages":[{"role":"system","content":"line\none \"quoted\" \u00e9 \ud83d\ude00"},{"role":"user","content":"日本"}]}"#,
        r#" { "messages" : [ ] , "model" : null , "stream" : false , "max_completion_tokens" : 0 } "#,
        r#"{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"number","minimum":-1.5e-3}}}}}],"temperature":0.7,"n":1,"stop":null,"logit_bias":{"50256":-100}}"#,
        r#"{"input":"text","model":"text-embedding-3-small","encoding_format":"float"}"#,
        "{}",
    ] {
        let fast = by_scan(body.as_bytes());
        assert!(fast.is_some(), "not read by the scan: {body}");
        assert_eq!(fast, by_serde(body.as_bytes()), "{body}");
    }
}

#[test]
fn text_that_is_not_utf8_in_a_skipped_value_is_skipped_as_serde_skips_it() {
    for body in [
        &b"{\"a\":\"\xff\"}"[..],
        b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3(\"}]}",
    ] {
        let fast = by_scan(body);
        assert!(fast.is_some(), "{}", String::from_utf8_lossy(body));
        assert_eq!(fast, by_serde(body), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn odd_bodies_are_left_to_serde() {
    for body in [
        r#"{"model":"a","model":"b"}"#,
        r#"{"mod\u0065l":"gpt"}"#,
        r#"{"model":"g\"pt"}"#,
        r#"{"max_tokens":1.0}"#,
        r#"{"max_tokens":1e3}"#,
        r#"{"max_tokens":-1}"#,
        r#"{"max_tokens":01}"#,
        r#"{"max_tokens":18446744073709551615}"#,
        r#"{"stream_options":[true]}"#,
        r#"{"stream_options":{"include_usage":true,"include_usage":false}}"#,
        r#"{"messages":{"a":1}}"#,
        r#"{"model":"m"} x"#,
        r#"{"model":"m",}"#,
        r#"{"a":"\x"}"#,
        "{\"a\":\"\u{1}\"}",
    ] {
        assert_eq!(by_scan(body.as_bytes()), None, "{body}");
    }
    // A key or `model` that is not UTF-8: serde's to refuse.
    assert_eq!(by_scan(b"{\"a\xff\":1}"), None);
    assert_eq!(by_scan(b"{\"model\":\"\xff\"}"), None);
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert_eq!(by_scan(deep.as_bytes()), None);
    assert!(
        by_serde(deep.as_bytes()).is_some(),
        "serde reads it, so it is left to serde"
    );
}

/// Pieces of string content; `odd` adds ones that break a string or need serde.
fn string(odd: bool) -> BoxedStrategy<String> {
    let mut pieces = vec![
        "a",
        "gpt-4o",
        "é",
        "日本",
        " ",
        "\\n",
        "\\\"",
        "\\\\",
        "\\/",
        "\\u00e9",
        "\\uD83D\\uDE00",
        "\\uDE00",
    ];
    if odd {
        pieces.extend(["\\x", "\\u12G4", "\\u12", "\u{1}", "\t", "\"", "\\"]);
    }
    prop::collection::vec(prop::sample::select(pieces), 0..5)
        .prop_map(|p| format!("\"{}\"", p.concat()))
        .boxed()
}

fn scalar(odd: bool) -> BoxedStrategy<String> {
    let mut words = vec![
        "null",
        "true",
        "false",
        "0",
        "-0",
        "7",
        "50",
        "1.5",
        "-2.25e-3",
        "1E+9",
        "9999999999999999999",
        "4096",
    ];
    if odd {
        words.extend([
            "01",
            "1.",
            "-",
            "1e",
            ".5",
            "+1",
            "nul",
            "tru",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "1.0",
            "-1",
            "NaN",
        ]);
    }
    prop_oneof![
        prop::sample::select(words).prop_map(String::from),
        string(odd)
    ]
    .boxed()
}

fn key(odd: bool) -> BoxedStrategy<String> {
    let mut keys = vec![
        "\"model\"",
        "\"stream\"",
        "\"stream_options\"",
        "\"include_usage\"",
        "\"messages\"",
        "\"max_tokens\"",
        "\"max_completion_tokens\"",
        "\"role\"",
        "\"content\"",
        "\"temperature\"",
        "\"Model\"",
        "\"model \"",
    ];
    if odd {
        keys.extend(["\"mod\\u0065l\"", "\"a\\\"b\"", "model", "\"\u{1}\""]);
    }
    prop::sample::select(keys).prop_map(String::from).boxed()
}

fn value(odd: bool) -> BoxedStrategy<String> {
    scalar(odd)
        .prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((key(odd), inner), 0..4).prop_map(|entries| {
                    let entries: Vec<String> = entries
                        .into_iter()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .collect();
                    format!("{{{}}}", entries.join(","))
                }),
            ]
        })
        .boxed()
}

/// One top-level entry: mostly a known key with a value near its type.
fn entry(odd: bool) -> BoxedStrategy<String> {
    let flag = prop::sample::select(vec!["true", "false", "null", "1", "\"true\""]);
    let option = flag.clone().prop_map(|f| format!("\"include_usage\":{f}"));
    prop_oneof![
        prop_oneof![string(odd), Just("null".to_string())].prop_map(|m| format!("\"model\":{m}")),
        flag.prop_map(|f| format!("\"stream\":{f}")),
        prop::collection::vec(prop_oneof![option, Just("\"x\":{}".to_string())], 0..3)
            .prop_map(|o| format!("\"stream_options\":{{{}}}", o.join(","))),
        prop::collection::vec(value(odd), 0..4)
            .prop_map(|m| format!("\"messages\":[{}]", m.join(","))),
        (
            prop::sample::select(vec!["max_tokens", "max_completion_tokens"]),
            scalar(odd)
        )
            .prop_map(|(k, n)| format!("\"{k}\":{n}")),
        (key(odd), value(odd)).prop_map(|(k, v)| format!("{k}:{v}")),
    ]
    .boxed()
}

fn body(odd: bool) -> impl Strategy<Value = String> {
    let space = prop::sample::select(vec!["", "", " ", "\n  ", "\t", "\r\n"]);
    prop::collection::vec((entry(odd), space.clone()), 0..6).prop_flat_map(move |entries| {
        space.clone().prop_map(move |end| {
            let entries: Vec<String> = entries.iter().map(|(e, s)| format!("{s}{e}{s}")).collect();
            format!("{{{}}}{end}", entries.join(","))
        })
    })
}

/// A body as SDKs send it: each known key at most once, with a value of its type,
/// among other keys of any well-formed value, in any order.
fn usual_body() -> impl Strategy<Value = String> {
    let plain = prop::sample::select(vec!["\"gpt-4o\"", "\"\"", "\"é/日本\"", "null"]);
    let flag = prop::sample::select(vec!["true", "false", "null"]);
    let count = prop::sample::select(vec!["0", "1", "4096", "9999999999999999999", "null"]);
    let message = (string(false), string(false))
        .prop_map(|(role, content)| format!("{{\"role\":{role},\"content\":{content}}}"));
    let known = (
        plain.prop_map(|m| format!("\"model\":{m}")),
        flag.clone().prop_map(|f| format!("\"stream\":{f}")),
        flag.prop_map(|f| format!("\"stream_options\":{{\"include_usage\":{f},\"x\":[1]}}")),
        prop::collection::vec(message, 0..4)
            .prop_map(|m| format!("\"messages\":[{}]", m.join(","))),
        count.clone().prop_map(|c| format!("\"max_tokens\":{c}")),
        count.prop_map(|c| format!("\"max_completion_tokens\":{c}")),
    );
    let unknown = prop::collection::vec(
        (
            prop::sample::select(vec!["temperature", "tools", "n", "user"]),
            value(false),
        ),
        0..3,
    );
    (known, prop::collection::vec(any::<bool>(), 6), unknown)
        .prop_flat_map(|((a, b, c, d, e, f), keep, unknown)| {
            let mut entries: Vec<String> = [a, b, c, d, e, f]
                .into_iter()
                .zip(keep)
                .filter_map(|(entry, keep)| keep.then_some(entry))
                .collect();
            let mut names = std::collections::HashSet::new();
            for (name, value) in unknown {
                if names.insert(name) {
                    entries.push(format!("\"{name}\":{value}"));
                }
            }
            Just(entries).prop_shuffle()
        })
        .prop_map(|entries| format!("{{{}}}", entries.join(",")))
}

/// A few bytes deleted, replaced or put in, anywhere.
fn damaged(body: String, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
    let mut bytes = body.into_bytes();
    for (at, kind, byte) in edits {
        let at = at.index(bytes.len() + 1);
        let choices = b"{}[]\",:\\ 0e.-nx\xc3";
        let byte = choices[usize::from(byte) % choices.len()];
        match kind % 3 {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 if at < bytes.len() => bytes[at] = byte,
            _ => bytes.insert(at, byte),
        }
    }
    bytes
}

proptest! {
    // Many cases: a body the scan reads needs every known key well typed, and the
    // odd pieces are a few among many.
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn what_the_scan_reads_serde_reads_the_same(
        body in body(true),
        edits in prop::collection::vec(any::<(prop::sample::Index, u8, u8)>(), 0..3),
    ) {
        let bytes = damaged(body, edits);
        if let Some(fast) = by_scan(&bytes) {
            prop_assert_eq!(Some(fast), by_serde(&bytes), "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn the_usual_shapes_take_the_scan(body in usual_body()) {
        let fast = by_scan(body.as_bytes());
        prop_assert!(fast.is_some(), "{}", body);
        prop_assert_eq!(fast, by_serde(body.as_bytes()), "{}", body);
    }
}
