//! SPEC §1: an HTTP/2 upstream gets as many connections as its stream limit requires.
//! The upstream is a real one: Python's hypercorn over TLS (a test CA), announcing
//! `SETTINGS_MAX_CONCURRENT_STREAMS = 2`.
//!
//! Needs a Python with `hypercorn` (tests/python/requirements.txt; `scripts/test` makes
//! `.venv` and sets BACKSTOP_TEST_PYTHON). BACKSTOP_SKIP_PYTHON=1 skips it deliberately.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::TestClient;
use common::tls::LocalhostCert;
use http::StatusCode;
use tokio::process::{Child, Command};

/// The CA, certificate and key of a fresh `localhost` certificate, as PEM files.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let cert = LocalhostCert::new();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, &cert.ca_pem).expect("ca.pem");
    std::fs::write(&paths.1, &cert.cert_pem).expect("cert.pem");
    std::fs::write(&paths.2, &cert.key_pem).expect("key.pem");
    paths
}

/// The upstream: `/v1/slow` answers after 1 s, anything else at once.
const APP: &str = r#"
import asyncio

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/v1/slow":
        await asyncio.sleep(1)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"object":"list","data":[]}'})
"#;

struct Hypercorn {
    child: Child,
    port: u16,
}

async fn hypercorn(python: &Path, dir: &Path, cert: &Path, key: &Path) -> Hypercorn {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    std::fs::write(dir.join("app.py"), APP).expect("app.py");
    let config = dir.join("hypercorn.toml");
    std::fs::write(
        &config,
        format!(
            "bind = [\"127.0.0.1:{port}\"]\ncertfile = {:?}\nkeyfile = {:?}\n\
             alpn_protocols = [\"h2\"]\nh2_max_concurrent_streams = 2\n\
             # In this process: a worker process would outlive the kill at the end.\n\
             workers = 0\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .expect("hypercorn.toml");
    let child = Command::new(python)
        .args(["-m", "hypercorn", "--config"])
        .arg(&config)
        .arg("app:app")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start hypercorn");
    let mut listening = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listening, "hypercorn did not listen on {port} within 10 s");
    Hypercorn { child, port }
}

async fn stats_h2(admin: &TestClient) -> (u64, u64) {
    let stats = admin.get("/stats").await.json();
    let row = &stats["upstreams"][0];
    (
        row["h2_connections"].as_u64().expect("h2_connections"),
        row["h2_streams"].as_u64().expect("h2_streams"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_beyond_the_stream_limit_get_more_connections() {
    let Some(python) = common::python() else {
        eprintln!("skipped: BACKSTOP_SKIP_PYTHON is set");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(dir.path());
    let mut upstream = hypercorn(&python, dir.path(), &cert, &key).await;
    let config = backstop::Config::from_toml(
        &format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\npool_idle_timeout = \"1s\"\n\
             {}[tls]\nnative_roots = false\nextra_ca_files = [{:?}]\n\
             [[upstream]]\nname = \"hypercorn\"\nbase_url = \"https://localhost:{}\"\n",
            common::failure_log_toml(dir.path()),
            ca.display().to_string(),
            upstream.port
        ),
        &|_| None,
    )
    .expect("config");
    let proxy = backstop::start(config).await.expect("backstop starts");
    let client = TestClient::new(proxy.proxy_addr());
    let admin = TestClient::new(proxy.admin_addr());

    // One request first: backstop learns the upstream speaks h2 and allows 2 streams.
    let warm = client.get("/v1/models").await;
    assert_eq!(warm.status, StatusCode::OK, "{}", warm.text());
    assert_eq!(stats_h2(&admin).await.0, 1);

    // Six requests of 1 s each, at once: on one connection they would take 3 s.
    let most_streams = Arc::new(AtomicU64::new(0));
    let watching = {
        let (admin, most) = (admin.clone(), most_streams.clone());
        tokio::spawn(async move {
            for _ in 0..40 {
                most.fetch_max(stats_h2(&admin).await.1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let started = Instant::now();
    let requests: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/v1/slow").await })
        })
        .collect();
    for request in requests {
        let response = request.await.expect("request task");
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    }
    let took = started.elapsed();
    let (connections, _) = stats_h2(&admin).await;
    watching.await.expect("stats watcher");
    eprintln!(
        "6 concurrent 1 s requests took {took:?} over {connections} h2 connections \
         (most streams in flight seen: {})",
        most_streams.load(Ordering::Relaxed)
    );
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?}: queued behind the stream limit"
    );
    assert!(
        connections >= 3,
        "{connections} connections for 6 streams of 2 each"
    );
    assert_eq!(
        most_streams.load(Ordering::Relaxed),
        6,
        "/stats shows the streams in flight"
    );

    // Idle connections are closed after pool_idle_timeout.
    let mut open = connections;
    for _ in 0..100 {
        open = stats_h2(&admin).await.0;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "idle h2 connections are closed");
    proxy.shutdown().await;
    let _ = upstream.child.kill().await;
}
