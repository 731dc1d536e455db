//! A real `redis-server` for a test: started on a free loopback port with persistence off,
//! stopped when dropped.
//!
//! ```no_run
//! use token_testkit::redis::{RedisServer, Reply};
//!
//! let mut server = RedisServer::start();
//! assert_eq!(server.cmd(&["PING"]).unwrap(), Reply::Status("PONG".into()));
//! let url = server.url(); // redis://127.0.0.1:PORT
//! server.shutdown_nosave(); // now every connection is refused
//! server.restart(); // same port, empty
//! # let _ = url;
//! ```
//!
//! A missing `redis-server` binary panics with the command that installs it
//! (`apt-get install -y redis-server`): these tests never skip silently.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long [`RedisServer::start`] and [`RedisServer::restart`] wait for the server to answer
/// `PING` (generous: a loaded 2-core machine can be slow to fork and exec).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The timeout of each [`RedisServer::cmd`] connection, read and write.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The binary [`RedisServer`] runs: `$REDIS_SERVER` if set, else `redis-server` on the `PATH`.
pub fn redis_server_binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A `redis-server` child process on `127.0.0.1`, persistence off (`--save ''
/// --appendonly no`), `DEBUG` enabled for local connections. Killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    binary: PathBuf,
    tls: Option<Tls>,
}

/// The TLS side of a [`RedisServer::start_tls`] server.
struct Tls {
    port: u16,
    ca_pem: Vec<u8>,
}

impl RedisServer {
    /// Starts a server on a free port. Panics (with the install command, if the binary is
    /// missing) when it cannot.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`RedisServer::start`] with extra `redis-server` arguments (`["--maxmemory", "10mb"]`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        match Self::try_start_with(extra_args) {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts a server on a free port, or says why it could not.
    pub fn try_start_with(extra_args: &[&str]) -> io::Result<Self> {
        let dir = scratch_dir()?;
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            binary: redis_server_binary(),
            tls: None,
        };
        server.start_on_free_ports()?;
        Ok(server)
    }

    /// Starts a server that also listens for TLS ([`RedisServer::tls_url`]), its certificate
    /// for `127.0.0.1` signed by a fresh CA ([`RedisServer::ca_pem`]). Clients need not present
    /// a certificate. The plain port stays open for [`RedisServer::cmd`]. Panics if it cannot
    /// (naming the install command if `openssl` is missing).
    pub fn start_tls() -> Self {
        let attempt = || -> io::Result<Self> {
            let mut server = Self {
                child: None,
                port: 0,
                dir: scratch_dir()?,
                extra_args: Vec::new(),
                binary: redis_server_binary(),
                tls: None,
            };
            let ca_pem = make_certificates(&server.dir)?;
            server.tls = Some(Tls { port: 0, ca_pem });
            server.start_on_free_ports()?;
            Ok(server)
        };
        match attempt() {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    fn start_on_free_ports(&mut self) -> io::Result<()> {
        // The free port is found by binding and releasing it, so another process can take it
        // before redis-server binds: try a few ports.
        let mut last = None;
        for _ in 0..5 {
            self.port = free_port()?;
            if let Some(tls) = &mut self.tls {
                tls.port = free_port()?;
            }
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// `rediss://127.0.0.1:tls_port` for a [`RedisServer::start_tls`] server.
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|tls| format!("rediss://127.0.0.1:{}", tls.port))
    }

    /// The PEM certificate of the CA that signed a [`RedisServer::start_tls`] server's
    /// certificate.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.tls.as_ref().map(|tls| tls.ca_pem.as_slice())
    }

    /// The port it listens on (the same across [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the process is running (it is between [`RedisServer::shutdown_nosave`] and
    /// [`RedisServer::restart`]).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `SHUTDOWN NOSAVE`, then waits for the process to exit: every connection breaks, new
    /// ones are refused, and the data is gone.
    pub fn shutdown_nosave(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The server closes the connection instead of answering; whatever it says is fine.
        let _ = self.cmd(&["SHUTDOWN", "NOSAVE"]);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Starts the server again on the same port, empty. Stops it first if it is running.
    /// Panics if it cannot.
    pub fn restart(&mut self) {
        self.shutdown_nosave();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Sends one command on a fresh connection and returns the reply (an error reply is
    /// `Ok(Reply::Error(..))`).
    pub fn cmd(&self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_bytes(&args)
    }

    /// [`RedisServer::cmd`] with binary arguments.
    pub fn cmd_bytes(&self, args: &[&[u8]]) -> io::Result<Reply> {
        command(self.addr(), args, COMMAND_TIMEOUT)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let port = self.port.to_string();
        let log = self.dir.join("redis.log");
        let mut cmd = Command::new(&self.binary);
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--enable-debug-command", "local"])
        .arg("--dir")
        .arg(&self.dir)
        .arg("--logfile")
        .arg(&log)
        .args(&self.extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(tls) = &self.tls {
            cmd.arg("--tls-port")
                .arg(tls.port.to_string())
                .arg("--tls-cert-file")
                .arg(self.dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(self.dir.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]);
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "`{}` not found: these tests need a real Redis; install it with \
                         `apt-get install -y redis-server` (or set REDIS_SERVER to its path)",
                        self.binary.display()
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(io::Error::other(format!(
                    "redis-server on port {port} exited at startup ({status}): {stderr}{}",
                    log_tail(&log)
                )));
            }
            if let Ok(Reply::Status(pong)) =
                command(self.addr(), &[b"PING"], Duration::from_millis(500))
                && pong == "PONG"
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "redis-server on port {port} did not answer PING within {STARTUP_TIMEOUT:?}{}",
                    log_tail(&log)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3\r\nfoo` (`None` for the null bulk string)
    Bulk(Option<Vec<u8>>),
    /// `*2 ...` (`None` for the null array)
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The bulk strings of an array reply (`KEYS`, `HGETALL`), or of a single bulk reply.
    pub fn bulks(&self) -> Vec<Vec<u8>> {
        match self {
            Reply::Bulk(Some(b)) => vec![b.clone()],
            Reply::Array(Some(items)) => items.iter().flat_map(Reply::bulks).collect(),
            _ => Vec::new(),
        }
    }

    /// The integer of an `Int` reply.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// Sends one command to `addr` on a fresh connection, with `timeout` for connecting, writing
/// and reading; returns the reply.
pub fn command(addr: SocketAddr, args: &[&[u8]], timeout: Duration) -> io::Result<Reply> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request)?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || {
        text.parse::<i64>()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad length {text:?}")))
    };
    match line[0] {
        b'+' => Ok(Reply::Status(text)),
        b'-' => Ok(Reply::Error(text)),
        b':' => Ok(Reply::Int(number()?)),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len).map_err(io::Error::other)?;
            let mut buf = vec![0; len + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len);
            Ok(Reply::Bulk(Some(buf)))
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                return Ok(Reply::Array(None));
            }
            let mut items = Vec::new();
            for _ in 0..len {
                items.push(read_reply(reader)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected reply type {:?}", char::from(other)),
        )),
    }
}

/// A CA and a server certificate for 127.0.0.1 (P-256, ten years), made with `openssl` in
/// `dir`; returns the CA certificate's PEM.
fn make_certificates(dir: &Path) -> io::Result<Vec<u8>> {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    // Each step: the arguments without spaces, then those with.
    let steps: [(String, &[&str]); 3] = [
        (
            format!("req -x509 {ec} -keyout ca.key -out ca.crt -days 3650"),
            &[
                "-subj",
                "/CN=token-testkit CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ),
        (
            format!("req {ec} -keyout server.key -out server.csr"),
            &["-subj", "/CN=127.0.0.1"],
        ),
        (
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
             -days 3650 -extfile server.ext"
                .to_owned(),
            &[],
        ),
    ];
    for (plain, spaced) in &steps {
        let args: Vec<&str> = plain
            .split_whitespace()
            .chain(spaced.iter().copied())
            .collect();
        let output = match Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "`openssl` not found: the TLS tests make their certificates with it; \
                     install it with `apt-get install -y openssl`",
                ));
            }
            Err(e) => return Err(e),
        };
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
    }
    std::fs::read(dir.join("ca.crt"))
}

fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn scratch_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("token-testkit-redis-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(10);
            format!("\nlast lines of its log:\n{}", lines[start..].join("\n"))
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_shuts_down_and_restarts_empty() {
        let mut server = RedisServer::start();
        assert!(server.is_running());
        assert_eq!(
            server.cmd(&["SET", "k", "v"]).unwrap(),
            Reply::Status("OK".into())
        );
        assert_eq!(
            server.cmd(&["GET", "k"]).unwrap(),
            Reply::Bulk(Some(b"v".to_vec()))
        );
        let port = server.port();
        server.shutdown_nosave();
        assert!(!server.is_running());
        assert!(server.cmd(&["PING"]).is_err(), "refused while down");
        server.restart();
        assert_eq!(server.port(), port);
        assert_eq!(server.cmd(&["GET", "k"]).unwrap(), Reply::Bulk(None));
        assert!(matches!(server.cmd(&["NOPE"]).unwrap(), Reply::Error(_)));
        assert_eq!(
            server.cmd(&["DEBUG", "SLEEP", "0"]).unwrap(),
            Reply::Status("OK".into())
        );
    }

    #[test]
    fn tls_server_listens_on_both_ports() {
        let mut server = RedisServer::start_tls();
        let url = server.tls_url().unwrap();
        assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
        assert!(String::from_utf8_lossy(server.ca_pem().unwrap()).contains("BEGIN CERTIFICATE"));
        assert_eq!(server.cmd(&["PING"]).unwrap(), Reply::Status("PONG".into()));
        let tls_port = url.rsplit(':').next().unwrap().to_owned();
        let config = server.cmd(&["CONFIG", "GET", "tls-port"]).unwrap().bulks();
        assert_eq!(config[1], tls_port.as_bytes(), "listening for TLS");
        server.restart();
        assert_eq!(server.tls_url().unwrap(), url, "same ports after a restart");
        assert_eq!(server.cmd(&["PING"]).unwrap(), Reply::Status("PONG".into()));
        assert_eq!(RedisServer::start().tls_url(), None);
    }

    #[test]
    fn a_missing_binary_names_the_install_command() {
        // Not through $REDIS_SERVER (tests share the environment): a bogus path directly.
        let mut server = RedisServer {
            child: None,
            port: free_port().unwrap(),
            dir: scratch_dir().unwrap(),
            extra_args: Vec::new(),
            binary: PathBuf::from("/nonexistent/redis-server"),
            tls: None,
        };
        let err = server.spawn().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(msg.contains("apt-get install -y redis-server"), "{msg}");
        assert!(msg.contains("/nonexistent/redis-server"), "{msg}");
    }
}
