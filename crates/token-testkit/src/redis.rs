//! A real `redis-server` for tests: started on a free loopback port with no persistence,
//! stopped on drop. A missing binary is a clear failure naming the install command, never a
//! silent skip.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process on `127.0.0.1:{port}`.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// # Panics
    /// If `redis-server` is not installed (`apt-get install -y redis-server`) or does not come
    /// up within 20 s.
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Self { port, child: None };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "local",
                "--protected-mode",
                "yes",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need a real Redis; install it \
                     with `apt-get install -y redis-server` (.ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.command("PING").is_ok_and(|r| r.starts_with("+PONG")) {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one inline command and returns the first reply line (or everything read, for
    /// multi-line replies, up to a small limit).
    pub fn command(&self, command: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{command}\r\n").as_bytes())?;
        let mut buf = [0u8; 65536];
        let n = stream.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Every key and, for hashes, every field and value, as raw bytes (to check nothing is
    /// stored in clear).
    pub fn dump(&self) -> Vec<u8> {
        let keys = self.command("KEYS *").unwrap_or_default();
        let mut out = keys.clone().into_bytes();
        for key in keys.lines().filter(|l| !l.starts_with(['*', '$'])) {
            for cmd in [format!("HGETALL {key}"), format!("GET {key}")] {
                if let Ok(reply) = self.command(&cmd) {
                    out.extend_from_slice(reply.as_bytes());
                }
            }
        }
        out
    }

    /// `SHUTDOWN NOSAVE`: the server goes away, forgetting everything.
    pub fn shutdown_nosave(&mut self) {
        let _ = self.command("SHUTDOWN NOSAVE");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.shutdown_nosave();
        }
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound and released; the test binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Closes a stream both ways, ignoring errors.
pub(crate) fn close(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}
