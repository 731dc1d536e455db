//! A loopback TCP proxy that can pass, black-hole or reset traffic on command: the network
//! partitions `tc netem` would give, without privileges.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::redis::close;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Accept and read, never answer (a partition).
    Blackhole,
    /// Close every connection (a crashed peer).
    Reset,
}

/// A proxy in front of `upstream`, on its own loopback port.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    /// Starts forwarding `127.0.0.1:{new port}` to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (m, s) = (Arc::clone(&mode), Arc::clone(&streams));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if m.load(Ordering::SeqCst) == Mode::Reset as u8 {
                    close(&client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    close(&client);
                    continue;
                };
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        s.lock().unwrap().push(clone);
                    }
                }
                for (from, to) in [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let m = Arc::clone(&m);
                        std::thread::spawn(move || pump(from, to, &m));
                    }
                }
            }
        });
        Self {
            addr,
            mode,
            streams,
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://{proxy address}`.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Switches the mode; `Reset` also closes every open connection.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        if mode == Mode::Reset {
            for stream in self.streams.lock().unwrap().drain(..) {
                close(&stream);
            }
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match mode.load(Ordering::SeqCst) {
            m if m == Mode::Pass as u8 => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            m if m == Mode::Blackhole as u8 => {} // swallowed
            _ => break,
        }
    }
    close(&from);
    close(&to);
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(Mode::Reset);
    }
}
