use proptest::prelude::*;

use super::*;

#[test]
fn every_line_ending_closes_an_event() {
    for stream in [
        &b"data: 1\n\n"[..],
        b"data: 1\r\r",
        b"data: 1\r\n\r\n",
        b"data: 1\r\n\n",
        b"data: 1\n\r",
        b"data: 1\r\r\n",
    ] {
        assert_eq!(first_event(stream).as_deref(), Some("1"), "{stream:?}");
        let found = FirstEvent::default().scan(stream);
        assert!(found.is_some(), "{stream:?}");
    }
}

#[test]
fn a_crlf_is_one_line_end_even_when_split() {
    let mut scan = FirstEvent::default();
    assert_eq!(scan.scan(b"data: 1\r"), None);
    assert_eq!(scan.scan(b"data: 1\r\n"), None, "CRLF, not a blank line");
    assert_eq!(scan.scan(b"data: 1\r\n\r"), Some(10));
}

#[test]
fn comments_and_fields_without_data_keep_waiting() {
    let stream = b": ping\r\rretry: 10\revent: x\r\r";
    assert_eq!(FirstEvent::default().scan(stream), None);
    assert_eq!(first_event(stream), None);
}

#[test]
fn data_forms_and_multi_line_data() {
    assert_eq!(first_event(b"data:2\n\n").as_deref(), Some("2"));
    assert_eq!(first_event(b"data\n\n").as_deref(), Some(""));
    assert_eq!(first_event(b"database: x\n\n"), None);
    assert_eq!(
        first_event(b"data: a\rdata:  b\r\r").as_deref(),
        Some("a\n b")
    );
    assert_eq!(
        first_event(b"\xEF\xBB\xBFdata: x\n\n").as_deref(),
        Some("x")
    );
}

#[test]
fn a_bom_split_across_reads_is_skipped() {
    let stream = b"\xEF\xBB\xBFdata: x\n\n";
    let mut scan = FirstEvent::default();
    assert_eq!(scan.scan(&stream[..1]), None);
    assert_eq!(scan.scan(&stream[..2]), None);
    assert_eq!(scan.scan(stream), Some(stream.len()));
}

#[test]
fn boundary_follows_every_line_ending() {
    let at_end = |chunks: &[&[u8]]| {
        let mut b = Boundary::default();
        for c in chunks {
            b.push(c);
        }
        b.at_event_end()
    };
    assert!(at_end(&[]));
    for ended in [
        &b"data: 1\n\n"[..],
        b"data: 1\r\r",
        b"data: 1\r\n\r\n",
        b"x\n\r",
    ] {
        assert!(at_end(&[ended]), "{ended:?}");
    }
    for open in [&b"data: 1"[..], b"data: 1\n", b"data: 1\r", b"data: 1\r\n"] {
        assert!(!at_end(&[open]), "{open:?}");
    }
    assert!(at_end(&[b"data: 1\r", b"\n", b"\r", b"\n"]));
    assert!(!at_end(&[b"data: 1\r\n\r\n", b"da"]));
}

/// One line of a generated stream: its text and its line ending.
#[derive(Debug, Clone)]
struct Line {
    text: &'static str,
    ending: &'static str,
}

fn ending() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r"), Just("\r\n")]
}

fn field() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(": keep-alive"),
        Just(":"),
        Just("retry: 1000"),
        Just("event: message"),
        Just("id: 7"),
        Just("database: not data"),
    ]
}

fn data() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"h é\"}}]}"),
        Just("data:{\"a\":1}"),
        Just("data:  two spaces"),
        Just("data"),
        Just("data: [DONE]"),
    ]
}

/// A valid stream: an optional BOM, events of fields only (no data), then the first
/// event with data (fields and data lines mixed), then more. Returns the bytes, where
/// the first data event is complete, and its data.
fn stream() -> impl Strategy<Value = (Vec<u8>, usize, String)> {
    let event_lines = |with_data: bool| {
        let line = if with_data {
            prop_oneof![field(), data()].boxed()
        } else {
            field().boxed()
        };
        (
            proptest::collection::vec((line, ending()), 0..4),
            proptest::option::of((data(), ending())),
        )
            .prop_map(move |(lines, forced)| {
                let mut lines: Vec<Line> = lines
                    .into_iter()
                    .map(|(text, ending)| Line { text, ending })
                    .collect();
                if with_data && let Some((text, ending)) = forced {
                    lines.push(Line { text, ending });
                }
                lines
            })
    };
    (
        any::<bool>(),
        proptest::collection::vec((event_lines(false), ending()), 0..3),
        (event_lines(true), data(), ending(), ending()),
        proptest::collection::vec((event_lines(true), ending()), 0..2),
    )
        .prop_map(|(bom, before, (first, must, must_end, blank), after)| {
            let mut out = Vec::new();
            if bom {
                out.extend_from_slice(BOM);
            }
            let mut prev_cr = false;
            let mut push = |out: &mut Vec<u8>, text: &str, ending: &str| {
                // CR then LF is one line end: a blank line after a CR must not be "\n".
                let ending = if text.is_empty() && prev_cr && ending == "\n" {
                    "\r"
                } else {
                    ending
                };
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(ending.as_bytes());
                prev_cr = ending == "\r";
            };
            for (lines, blank) in &before {
                for l in lines {
                    push(&mut out, l.text, l.ending);
                }
                push(&mut out, "", blank);
            }
            let mut first = first;
            first.push(Line {
                text: must,
                ending: must_end,
            });
            let expected_data = first
                .iter()
                .filter_map(|l| data_value(l.text.as_bytes()))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect::<Vec<_>>()
                .join("\n");
            for l in &first {
                push(&mut out, l.text, l.ending);
            }
            push(&mut out, "", blank);
            // The event is complete with the first byte of its blank line's ending.
            let blank_len = if out.ends_with(b"\r\n") { 2 } else { 1 };
            let complete = out.len() - blank_len + 1;
            for (lines, blank) in &after {
                for l in lines {
                    push(&mut out, l.text, l.ending);
                }
                push(&mut out, "", blank);
            }
            (out, complete, expected_data)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_first_event_is_found_exactly_when_it_is_complete(
        (bytes, complete, data) in stream()
    ) {
        // Byte by byte, as a stream trickling in.
        let mut scan = FirstEvent::default();
        for k in 0..=bytes.len() {
            let found = scan.scan(&bytes[..k]);
            if k < complete {
                prop_assert_eq!(found, None, "found early at {} of {:?}", k, bytes);
            } else {
                prop_assert_eq!(found, Some(complete), "at {} of {:?}", k, bytes);
            }
        }
        // Split in two at every byte boundary.
        for k in 0..=bytes.len() {
            let mut scan = FirstEvent::default();
            prop_assert_eq!(scan.scan(&bytes[..k]).is_some(), k >= complete);
            prop_assert_eq!(scan.scan(&bytes), Some(complete));
            prop_assert_eq!(first_event(&bytes[..k]).is_some(), k >= complete);
        }
        let found = first_event(&bytes);
        prop_assert_eq!(found.as_deref(), Some(data.as_str()));
        let mut boundary = Boundary::default();
        boundary.push(&bytes[..complete]);
        prop_assert!(boundary.at_event_end());
    }
}
