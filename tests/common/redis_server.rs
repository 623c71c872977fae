//! A real `redis-server` (Debian's package) for the fleet tests: on a free port of
//! 127.0.0.1, in its own temp dir, no persistence; killed when dropped. It can be
//! killed and started again on the same port mid-test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts redis-server (with `requirepass` if `password` is given). With CI set,
    /// a missing redis-server fails the test; otherwise `None` skips it.
    pub async fn start(password: Option<&str>) -> Option<RedisServer> {
        if !super::tool_or_skip("redis-server", "--version", "redis-server") {
            return None;
        }
        let port = super::free_port()?;
        let mut server = RedisServer {
            port,
            password: password.map(str::to_owned),
            dir: tempfile::Builder::new()
                .prefix("backstop-redis-")
                .tempdir()
                .expect("temp dir"),
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    /// (Re)starts the server on its port.
    pub async fn restart(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        let up = super::eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "redis-server did not start listening on {port}");
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// `redis://127.0.0.1:PORT/0`, without the password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A connection of the test's own (with the password, if any).
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let url = match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        let client = redis::Client::open(url).expect("client");
        client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }

    /// Whether `key` exists now.
    pub async fn exists(&self, key: &str) -> bool {
        let mut c = self.connection().await;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(&mut c)
            .await
            .expect("EXISTS")
            == 1
    }
}
