//! Egress proxies (SPEC §9) with a real forward proxy, tinyproxy, between backstop and
//! a TLS upstream: each variable, NO_PROXY, `proxy = "none"`, Basic auth, a refused
//! password, a stopped proxy, and an http upstream in absolute form. Every backstop
//! here gets its proxy variables from the test, never from the developer's env.

mod common;

use std::path::Path;
use std::time::Duration;

use backstop::mock::MockUpstream;
use common::TestClient;
use common::egress::{Tinyproxy, tls_upstream};

/// One https upstream at `upstream` trusting `ca`, with `upstream_extra` in its table.
fn config_text(upstream: &str, ca: &Path, dir: &Path, upstream_extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}\
         [tls]\nnative_roots = false\nextra_ca_files = [{:?}]\n\
         [retry]\nbase_delay = \"5ms\"\n\
         [[upstream]]\nname = \"tls\"\nbase_url = \"{upstream}\"\n{upstream_extra}\n",
        common::failure_log_toml(dir),
        ca.display().to_string()
    )
}

async fn start(text: &str, vars: &[(&str, &str)]) -> backstop::Running {
    let env = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let config = backstop::Config::from_toml(text, &env).expect("config");
    backstop::start(config).await.expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_reached_through_the_proxy_each_variable_names_and_pooled() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(proxy) = Tinyproxy::start(dir.path(), None).await else {
        return;
    };
    let ca = dir.path().join("ca.pem");
    let upstream = format!("https://{}", tls_upstream(&ca).await);
    let text = config_text(&upstream, &ca, dir.path(), "");
    for (n, var) in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .enumerate()
    {
        let backstop = start(&text, &[(var, &proxy.url())]).await;
        let client = TestClient::new(backstop.proxy_addr());
        for _ in 0..2 {
            assert_eq!(client.get("/v1/models").await.status, 200, "{var}");
        }
        assert_eq!(
            proxy.requests("CONNECT"),
            n + 1,
            "{var}: one tunnel, reused"
        );
        backstop.shutdown().await;
    }
    // NO_PROXY (curl's rules) and `proxy = "none"` go direct.
    for (vars, extra) in [
        (
            vec![
                ("HTTPS_PROXY", proxy.url()),
                ("NO_PROXY", "localhost,127.0.0.0/8".to_owned()),
            ],
            "",
        ),
        (
            vec![("https_proxy", proxy.url()), ("no_proxy", "*".to_owned())],
            "",
        ),
        (vec![("HTTPS_PROXY", proxy.url())], "proxy = \"none\""),
    ] {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let backstop = start(&config_text(&upstream, &ca, dir.path(), extra), &vars).await;
        let client = TestClient::new(backstop.proxy_addr());
        assert_eq!(client.get("/v1/models").await.status, 200);
        backstop.shutdown().await;
    }
    assert_eq!(
        proxy.requests("CONNECT"),
        4,
        "the bypasses opened no tunnel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_url_opens_the_tunnel() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(proxy) = Tinyproxy::start(dir.path(), Some(("alice", "right-pw"))).await else {
        return;
    };
    let ca = dir.path().join("ca.pem");
    let upstream = format!("https://{}", tls_upstream(&ca).await);
    let own = format!("proxy = \"http://alice:right-pw@127.0.0.1:{}\"", proxy.port);
    let backstop = start(&config_text(&upstream, &ca, dir.path(), &own), &[]).await;
    let client = TestClient::new(backstop.proxy_addr());
    assert_eq!(client.get("/v1/models").await.status, 200);
    assert_eq!(proxy.requests("CONNECT"), 1);
    backstop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_proxy_password_is_a_502_upstream_proxy_error_sent_once_and_never_printed() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(proxy) = Tinyproxy::start(dir.path(), Some(("alice", "right-pw"))).await else {
        return;
    };
    let ca = dir.path().join("ca.pem");
    let upstream = format!("https://{}", tls_upstream(&ca).await);
    let secret = "Wr0ng-s3cret";
    let env_url = format!("http://alice:{secret}@127.0.0.1:{}", proxy.port);
    let file = dir.path().join("backstop.toml");
    std::fs::write(
        &file,
        config_text(&upstream, &ca, &dir.path().join("failures"), ""),
    )
    .expect("write");
    let mut backstop = common::process::spawn_serve_with_proxy_env(
        &file,
        "debug",
        &[("HTTPS_PROXY", env_url.as_str())],
    )
    .await;
    let client = TestClient::new(backstop.proxy_addr);

    let response = client.get("/v1/models").await;

    assert_eq!(response.status, 502);
    let body = response.json();
    assert_eq!(body["error"]["code"], "upstream_proxy_error");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(&format!("alice:***@127.0.0.1:{}", proxy.port)),
        "{message}"
    );
    assert_eq!(
        response.header("x-backstop-attempts"),
        Some("1"),
        "not retried"
    );
    assert_eq!(proxy.requests("CONNECT"), 1);

    // The password is in no output: logs at debug level, failure records, /stats.
    let stats = reqwest_like_get(backstop.admin_addr, "/stats").await;
    common::process::signal(&backstop.child, "TERM");
    let mut logs = String::new();
    while let Ok(Some(line)) =
        tokio::time::timeout(Duration::from_secs(10), backstop.logs.recv()).await
    {
        logs.push_str(&line.to_string());
    }
    assert!(
        logs.contains("upstream_proxy_error"),
        "the refusal is logged: {logs}"
    );
    let records = read_dir_text(&dir.path().join("failures"));
    assert!(records.contains("upstream_proxy_error"), "{records}");
    for (what, text) in [
        ("logs", &logs),
        ("failure records", &records),
        ("/stats", &stats),
        ("response", &message),
    ] {
        assert!(!text.contains(secret), "the password leaked into {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_shows_proxy_credentials_as_stars() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("backstop.toml");
    std::fs::write(
        &file,
        "[[upstream]]\nname = \"openai\"\nbase_url = \"https://api.openai.com\"\n\
         proxy = \"http://bob:t0p-secret@proxy.internal:3128\"\n",
    )
    .expect("write");
    let path = file.display().to_string();
    let (code, stdout, stderr) = common::process::run(&["check-config", "--config", &path]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("http://bob:***@proxy.internal:3128"),
        "{stdout}"
    );
    assert!(!stdout.contains("t0p-secret") && !stderr.contains("t0p-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_proxy_gives_connect_errors_that_are_retried() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = dir.path().join("ca.pem");
    let upstream = format!("https://{}", tls_upstream(&ca).await);
    let closed = common::chains::refusing_addr();
    let backstop = start(
        &config_text(&upstream, &ca, dir.path(), ""),
        &[("HTTPS_PROXY", &format!("http://{closed}"))],
    )
    .await;
    let response = TestClient::new(backstop.proxy_addr())
        .get("/v1/models")
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["error"]["code"], "upstream_connect_error");
    assert_eq!(response.header("x-backstop-attempts"), Some("3"), "retried");
    backstop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_upstream_goes_through_http_proxy_in_absolute_form() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(proxy) = Tinyproxy::start(dir.path(), None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}\
         [[upstream]]\nname = \"mock\"\nbase_url = \"{}\"\n",
        common::failure_log_toml(dir.path()),
        mock.url()
    );
    let backstop = start(&text, &[("HTTP_PROXY", &proxy.url())]).await;
    let response = TestClient::new(backstop.proxy_addr())
        .get("/v1/models")
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(proxy.requests(&format!("GET {}/v1/models", mock.url())), 1);
    assert_eq!(mock.request_count(), 1);
    backstop.shutdown().await;
}

async fn reqwest_like_get(addr: std::net::SocketAddr, path: &str) -> String {
    TestClient::new(addr).get(path).await.text()
}

fn read_dir_text(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}
