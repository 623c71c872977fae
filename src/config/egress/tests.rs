use super::*;

fn url(s: &str) -> UpstreamUrl {
    let uri: Uri = s.parse().expect("url");
    UpstreamUrl {
        scheme: uri.scheme().expect("scheme").clone(),
        authority: uri.authority().expect("host").clone(),
        path: String::new(),
    }
}

fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn credentials_are_sent_as_basic_and_never_printed() {
    let proxy = EgressProxy::parse("http://alice:s%40cret@proxy.corp:3128", "proxy").expect("ok");
    assert_eq!(proxy.to_string(), "http://alice:***@proxy.corp:3128");
    assert!(!format!("{proxy:?}").contains("cret"));
    let auth = proxy.authorization().expect("credentials");
    assert!(auth.is_sensitive());
    // base64("alice:s@cret")
    assert_eq!(auth, "Basic YWxpY2U6c0BjcmV0");
    assert_eq!(proxy.uri().to_string(), "http://proxy.corp:3128/");
}

#[test]
fn a_bare_host_is_http_on_curls_default_port() {
    let proxy = EgressProxy::parse("proxy.corp", "HTTPS_PROXY").expect("ok");
    assert_eq!(proxy.to_string(), "http://proxy.corp:1080");
    assert!(proxy.authorization().is_none());
    let v6 = EgressProxy::parse("http://[::1]:8888/", "HTTPS_PROXY").expect("ok");
    assert_eq!(v6.to_string(), "http://[::1]:8888");
}

#[test]
fn unsupported_proxies_are_refused_without_echoing_the_url() {
    for bad in [
        "socks5://u:pw123@h:1",
        "https://u:pw123@h:1",
        "http://u:pw123@",
    ] {
        let e = EgressProxy::parse(bad, "proxy").expect_err(bad);
        assert!(!e.contains("pw123"), "{e}");
    }
}

#[test]
fn the_upstream_setting_wins_over_the_environment() {
    let env = env_of(&[("HTTPS_PROXY", "http://env:3128")]);
    let base = url("https://api.openai.com");
    let none = resolve(Some("none"), &base, &env).expect("ok");
    assert!(none.is_none());
    let own = resolve(Some("http://own:1"), &base, &env).expect("ok");
    assert_eq!(own.expect("proxy").to_string(), "http://own:1");
    let from_env = resolve(None, &base, &env).expect("ok").expect("proxy");
    assert_eq!(
        (from_env.to_string().as_str(), from_env.source.as_str()),
        ("http://env:3128", "HTTPS_PROXY")
    );
}

#[test]
fn each_variable_serves_its_scheme_lowercase_first_then_all_proxy() {
    let https = url("https://api.openai.com");
    let http = url("http://gw.local:8000");
    let pick = |vars: &[(&str, &str)], base: &UpstreamUrl| {
        resolve(None, base, &env_of(vars))
            .expect("ok")
            .map(|p| p.source)
    };
    assert_eq!(pick(&[("HTTP_PROXY", "a:1")], &https), None);
    assert_eq!(
        pick(&[("HTTP_PROXY", "a:1")], &http).as_deref(),
        Some("HTTP_PROXY")
    );
    assert_eq!(
        pick(&[("HTTPS_PROXY", "a:1"), ("https_proxy", "b:1")], &https).as_deref(),
        Some("https_proxy")
    );
    assert_eq!(
        pick(&[("ALL_PROXY", "a:1")], &https).as_deref(),
        Some("ALL_PROXY")
    );
    assert_eq!(
        pick(&[("all_proxy", "a:1")], &http).as_deref(),
        Some("all_proxy")
    );
    assert_eq!(pick(&[("HTTPS_PROXY", " ")], &https), None);
}

#[test]
fn no_proxy_follows_curls_rules() {
    let cases = [
        ("*", "api.openai.com", true),
        ("openai.com", "api.openai.com", true),
        (".openai.com", "api.openai.com", true),
        ("openai.com", "openai.com", true),
        (".openai.com", "openai.com", true),
        ("openai.com", "notopenai.com", false),
        ("example.com, OpenAI.com", "API.openai.com.", true),
        ("10.0.0.0/8", "10.1.2.3", true),
        ("10.0.0.0/8", "11.1.2.3", false),
        ("127.0.0.1", "127.0.0.1", true),
        ("localhost,127.0.0.1", "127.0.0.2", false),
        ("::1", "[::1]", true),
        ("fd00::/8", "[fd12::1]", true),
        ("", "api.openai.com", false),
    ];
    for (list, host, want) in cases {
        assert_eq!(no_proxy_matches(list, host), want, "{list:?} vs {host}");
    }
}

#[test]
fn no_proxy_bypasses_the_environment_proxy_in_either_case() {
    let base = url("https://127.0.0.1:8443");
    for name in ["NO_PROXY", "no_proxy"] {
        let vars = [
            ("HTTPS_PROXY", "proxy:3128"),
            (name, "localhost,127.0.0.0/8"),
        ];
        assert!(
            resolve(None, &base, &env_of(&vars)).expect("ok").is_none(),
            "{name}"
        );
    }
}
