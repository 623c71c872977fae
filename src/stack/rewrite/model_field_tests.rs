use super::*;

/// `body` with its model replaced, and the bytes apart from the model field on both sides.
fn rewrite(body: &str, to: &str) -> (String, String, String) {
    let Ok(ModelField::At { span, .. }) = find(body.as_bytes()) else {
        panic!("no model in {body}");
    };
    let out = replaced(body.as_bytes(), span.clone(), to);
    let out = String::from_utf8(out.to_vec()).expect("utf-8");
    let new_end = span.start + quoted(to).len();
    let around_in = format!("{}{}", &body[..span.start], &body[span.end..]);
    let around_out = format!("{}{}", &out[..span.start], &out[new_end..]);
    assert_eq!(around_in, around_out, "only the model value changed");
    (out, around_in, around_out)
}

#[test]
fn only_the_model_value_changes() {
    let (out, ..) = rewrite(r#"{"model":"gpt-4o","messages":[]}"#, "gpt-4o-mini");
    assert_eq!(out, r#"{"model":"gpt-4o-mini","messages":[]}"#);
}

#[test]
fn model_not_first_with_whitespace_and_escapes_elsewhere() {
    let body = "{\n  \"messages\" : [ {\"role\":\"user\",\"content\":\"say \\\"model\\\": \\\"x\\\" \\u00e9\"} ],\n  \"temperature\": 0.50,\n  \"model\"  :   \"gpt-4o\" ,\n  \"n\": 1e0\n}";
    let (out, ..) = rewrite(body, "gpt-4o-mini");
    assert!(out.contains("\"model\"  :   \"gpt-4o-mini\" ,"), "{out}");
    assert!(out.contains("0.50") && out.contains("1e0") && out.contains("\\u00e9"));
}

#[test]
fn an_escaped_model_value_is_read_and_replaced_whole() {
    let body = r#"{"model":"gpt\u002d4o","stream":true}"#;
    let Ok(ModelField::At { value, .. }) = find(body.as_bytes()) else {
        panic!("model");
    };
    assert_eq!(value, "gpt-4o");
    let (out, ..) = rewrite(body, "a\"b");
    assert_eq!(out, r#"{"model":"a\"b","stream":true}"#);
}

#[test]
fn nested_models_are_not_the_model() {
    let body = r#"{"tools":[{"model":"inner"}],"metadata":{"model":"meta"},"model":"outer"}"#;
    let Ok(ModelField::At { value, .. }) = find(body.as_bytes()) else {
        panic!("model");
    };
    assert_eq!(value, "outer");
    let (out, ..) = rewrite(body, "new");
    assert!(out.contains(r#"{"model":"inner"}"#) && out.contains(r#""model":"new"}"#));
}

#[test]
fn a_large_body_changes_in_the_model_alone() {
    let content = "x\\n\\\"y ".repeat(200_000);
    let body =
        format!(r#"{{"messages":[{{"role":"user","content":"{content}"}}],"model":"gpt-4o"}}"#);
    assert!(body.len() > 1_000_000);
    let (out, ..) = rewrite(&body, "gpt-4o-mini");
    assert_eq!(out.len(), body.len() + 5);
}

#[test]
fn what_cannot_be_rewritten_says_why() {
    assert_eq!(find(b"not json"), Err(NotRewritable::NotJson));
    assert_eq!(find(b""), Err(NotRewritable::NotJson));
    assert_eq!(find(br#"{"model":"a""#), Err(NotRewritable::NotJson));
    assert_eq!(find(br#"["model","a"]"#), Err(NotRewritable::NotAnObject));
    assert_eq!(find(br#"{"model":5}"#), Err(NotRewritable::ModelNotAString));
    assert_eq!(
        find(br#"{"model":null}"#),
        Err(NotRewritable::ModelNotAString)
    );
    assert_eq!(
        find(br#"{"model":"a","model":"b"}"#),
        Err(NotRewritable::NotJson),
        "a duplicate model is ambiguous"
    );
}

#[test]
fn a_missing_model_is_inserted_first() {
    let body = br#" { "messages": [] }"#;
    let Ok(ModelField::Absent { open, empty }) = find(body) else {
        panic!("absent");
    };
    assert_eq!((open, empty), (1, false));
    let out = inserted(body, open, empty, "gpt-4o");
    assert_eq!(&out[..], br#" {"model":"gpt-4o", "messages": [] }"#);
    let Ok(ModelField::Absent { open, empty }) = find(b"{ }") else {
        panic!("absent");
    };
    assert_eq!(
        &inserted(b"{ }", open, empty, "m")[..],
        br#"{"model":"m" }"#
    );
}
