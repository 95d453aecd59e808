//! A real `redis-server` for the tests, on a free loopback port, with or
//! without persistence, that can be killed and started again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
}

impl Redis {
    /// Starts a server; `persistent` turns on the append-only file with an
    /// fsync on every write, so a restart loses nothing.
    pub fn start(persistent: bool) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ssehub-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis {
            port,
            dir,
            persistent,
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again, after `kill`), and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let mut cmd =
            Command::new(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()));
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--dir", self.dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        self.child = Some(
            cmd.spawn()
                .expect("redis-server (apt-get install redis-server, or bash .ci/run)"),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(addr) {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server without warning (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok()
        && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy in front of Redis that can hold back what Redis sends, so
/// that a node connected through it falls behind the others, for as long
/// as the test wants and no longer.
pub struct HoldingProxy {
    pub addr: SocketAddr,
    hold: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingProxy {
    pub async fn start(redis: &Redis) -> HoldingProxy {
        let upstream: SocketAddr = ([127, 0, 0, 1], redis.port).into();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hold, held) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            // Dropped with the accept loop: every connection ends with it.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                conns.spawn(forward(client, server, held.clone()));
            }
        });
        HoldingProxy { addr, hold, task }
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// From now on, bytes from Redis wait (`true`) or flow again (`false`).
    pub fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = async move {
        let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match server_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Checked after the read: what Redis sent after `hold(true)`
            // is held.
            if held.wait_for(|h| !*h).await.is_err() {
                return;
            }
            if client_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(up, down);
}
