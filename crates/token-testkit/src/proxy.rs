//! A loopback TCP proxy in front of a server, whose behaviour switches at run time: the
//! stand-in for network partitions where `tc netem` is not available.
//!
//! ```no_run
//! use token_testkit::proxy::{FaultProxy, Mode};
//! use token_testkit::redis::RedisServer;
//!
//! let server = RedisServer::start();
//! let proxy = FaultProxy::start(server.addr()).unwrap();
//! let url = proxy.redis_url(); // clients connect here
//! proxy.set_mode(Mode::Blackhole); // connections stay open, nothing is ever answered
//! proxy.set_mode(Mode::Reset); // every connection is closed, new ones too
//! proxy.set_mode(Mode::PassThrough);
//! # let _ = url;
//! ```
//!
//! Plain std threads (two per connection), so it works under any async runtime or none. A
//! switch applies to open connections before [`FaultProxy::set_mode`] returns (a reset shuts
//! their sockets; a blackhole marks them dead), so tests need not wait for it to take effect. A connection that lived through a blackhole never
//! forwards again (bytes were dropped, so resuming it would desynchronise the protocol in a way
//! no real network does): a client must notice and reconnect.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a proxy thread wakes to look at the mode and the stop flag.
const POLL: Duration = Duration::from_millis(10);

/// What a [`FaultProxy`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards bytes both ways.
    PassThrough,
    /// Accepts connections and reads what clients send, but forwards nothing either way: the
    /// client waits for an answer that never comes (a partition, a hung server). A connection
    /// that was open during a blackhole stays dead after it (its bytes were lost, as when a
    /// partition drops a connection's state): only new connections pass again.
    Blackhole,
    /// Closes every open connection, and every new one as soon as it is accepted.
    Reset,
}

impl Mode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Mode::Blackhole,
            2 => Mode::Reset,
            _ => Mode::PassThrough,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Mode::PassThrough => 0,
            Mode::Blackhole => 1,
            Mode::Reset => 2,
        }
    }
}

struct Shared {
    mode: AtomicU8,
    stop: AtomicBool,
    accepted: AtomicUsize,
    /// The open connections, so that a switch applies to them at once, not at their next poll.
    conns: Mutex<Vec<Weak<Conn>>>,
}

/// One proxied connection, as [`FaultProxy::set_mode`] sees it.
struct Conn {
    /// Lived through a blackhole: never forwards again.
    dead: AtomicBool,
    client: TcpStream,
    server: TcpStream,
}

impl Shared {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::SeqCst))
    }
}

/// A TCP proxy on `127.0.0.1:ephemeral` in front of `upstream`. Stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` in [`Mode::PassThrough`].
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::PassThrough.as_u8()),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(&listener, upstream, &accept_shared))?;
        Ok(Self {
            addr,
            upstream,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:port` of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The server it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the mode, for open connections and new ones.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode.as_u8(), Ordering::SeqCst);
        let mut conns = self
            .shared
            .conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        conns.retain(|conn| conn.strong_count() > 0);
        for conn in conns.iter().filter_map(Weak::upgrade) {
            match mode {
                Mode::PassThrough => {}
                Mode::Blackhole => conn.dead.store(true, Ordering::SeqCst),
                Mode::Reset => {
                    conn.dead.store(true, Ordering::SeqCst);
                    let _ = conn.client.shutdown(Shutdown::Both);
                    let _ = conn.server.shutdown(Shutdown::Both);
                }
            }
        }
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor, blocked in accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("mode", &self.mode())
            .finish()
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.mode() == Mode::Reset {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let shared = Arc::clone(shared);
        // A failed spawn just drops the connection.
        let _ = std::thread::Builder::new()
            .name("fault-proxy-conn".into())
            .spawn(move || serve(client, upstream, &shared));
    }
}

fn serve(client: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let streams = (|| {
        for s in [&client, &server] {
            s.set_read_timeout(Some(POLL))?;
            s.set_write_timeout(Some(Duration::from_secs(2)))?;
            s.set_nodelay(true)?;
        }
        let conn = Arc::new(Conn {
            dead: AtomicBool::new(false),
            client: client.try_clone()?,
            server: server.try_clone()?,
        });
        Ok::<_, io::Error>((client.try_clone()?, server.try_clone()?, conn))
    })();
    let Ok((client2, server2, conn)) = streams else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        return;
    };
    shared
        .conns
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Arc::downgrade(&conn));
    let back_shared = Arc::clone(shared);
    let back_conn = Arc::clone(&conn);
    let back = std::thread::Builder::new()
        .name("fault-proxy-pump".into())
        .spawn(move || pump(server2, client2, &back_shared, &back_conn.dead));
    pump(client, server, shared, &conn.dead);
    if let Ok(back) = back {
        let _ = back.join();
    }
}

/// Copies `from` to `to` until either side closes, the mode is [`Mode::Reset`] or the proxy
/// stops; in [`Mode::Blackhole`] (and forever after it, `dead`) reads and discards. Closes both
/// sockets when done, so the other direction's pump ends too.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, dead: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let mode = shared.mode();
        if shared.stop.load(Ordering::SeqCst) || mode == Mode::Reset {
            break;
        }
        if mode == Mode::Blackhole {
            dead.store(true, Ordering::SeqCst);
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => match shared.mode() {
                Mode::PassThrough if !dead.load(Ordering::SeqCst) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Mode::PassThrough | Mode::Blackhole => dead.store(true, Ordering::SeqCst),
                Mode::Reset => break,
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::{RedisServer, Reply, command};

    #[test]
    fn modes_switch_at_run_time() {
        let server = RedisServer::start();
        let proxy = FaultProxy::start(server.addr()).unwrap();
        let quick = Duration::from_millis(300);
        let ping = || command(proxy.addr(), &[b"PING"], quick);
        assert_eq!(ping().unwrap(), Reply::Status("PONG".into()));

        proxy.set_mode(Mode::Blackhole);
        let err = ping().unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );

        proxy.set_mode(Mode::Reset);
        assert!(ping().is_err());

        proxy.set_mode(Mode::PassThrough);
        assert_eq!(ping().unwrap(), Reply::Status("PONG".into()));
        assert!(proxy.accepted() >= 4);
    }

    #[test]
    fn a_connection_open_during_a_blackhole_stays_dead() {
        let server = RedisServer::start();
        let proxy = FaultProxy::start(server.addr()).unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        proxy.set_mode(Mode::Blackhole);
        conn.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 7];
        assert!(conn.read_exact(&mut buf).is_err());
        proxy.set_mode(Mode::PassThrough);
        conn.write_all(b"PING\r\n").unwrap();
        assert!(conn.read_exact(&mut buf).is_err(), "still dead");
        let fresh = command(proxy.addr(), &[b"PING"], Duration::from_secs(10)).unwrap();
        assert_eq!(fresh, Reply::Status("PONG".into()));
    }

    #[test]
    fn reset_closes_open_connections() {
        let server = RedisServer::start();
        let proxy = FaultProxy::start(server.addr()).unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 7];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"+PONG\r\n");
        proxy.set_mode(Mode::Reset);
        // The proxy closes its side: the read ends (EOF or reset), well before the timeout.
        let mut rest = Vec::new();
        let closed = match conn.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::TimedOut,
        };
        assert!(closed);
    }
}
