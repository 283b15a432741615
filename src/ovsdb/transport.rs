//! Byte streams to a remote: unix, TCP, or TLS over TCP, each operation
//! bounded by the command's [`Deadline`].

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::{tls, Deadline, Error, Remote};

/// Sockets whose timeouts can be set before each call.
trait Timeouts {
    fn set_read(&self, d: Duration) -> io::Result<()>;
    fn set_write(&self, d: Duration) -> io::Result<()>;
}

impl Timeouts for UnixStream {
    fn set_read(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn set_write(&self, d: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(d))
    }
}

impl Timeouts for TcpStream {
    fn set_read(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn set_write(&self, d: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(d))
    }
}

/// A socket that sets its timeout to the time left before every read and
/// write, so no single call (nor rustls' internal loops) outlives the
/// deadline.
pub(crate) struct Timed<S> {
    sock: S,
    deadline: Deadline,
}

impl<S> Timed<S> {
    fn left(&self) -> io::Result<Duration> {
        self.deadline.remaining().map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "deadline exceeded"))
    }
}

impl<S: Read + Timeouts> Read for Timed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read(self.left()?)?;
        self.sock.read(buf)
    }
}

impl<S: Write + Timeouts> Write for Timed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write(self.left()?)?;
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

enum Stream {
    Unix(Timed<UnixStream>),
    Tcp(Timed<TcpStream>),
    Tls(Box<StreamOwned<ClientConnection, Timed<TcpStream>>>),
}

/// Read + Write as one trait object, to dispatch over [`Stream`] once.
trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// A connected stream plus byte counters (application bytes, i.e. JSON
/// text; for TLS the plaintext).
pub(crate) struct Conn {
    stream: Stream,
    pub(crate) read: u64,
    pub(crate) written: u64,
}

impl Conn {
    pub(crate) fn set_deadline(&mut self, d: Deadline) {
        match &mut self.stream {
            Stream::Unix(s) => s.deadline = d,
            Stream::Tcp(s) => s.deadline = d,
            Stream::Tls(s) => s.sock.deadline = d,
        }
    }

    /// Is there something to read within `wait`? Peeks the socket, so an
    /// idle wait consumes nothing (TLS: plaintext rustls still buffers is
    /// found at the next socket activity or the next wait).
    pub(crate) fn wait_readable(&mut self, wait: Duration) -> io::Result<bool> {
        let wait = wait.clamp(Duration::from_millis(1), self.left_for_wait()?);
        let mut b = [0u8; 1];
        let r = match &mut self.stream {
            // UnixStream::peek is unstable: recv(2) with MSG_PEEK.
            Stream::Unix(s) => s.sock.set_read_timeout(Some(wait)).and_then(|_| {
                use std::os::fd::AsRawFd;
                nix::sys::socket::recv(s.sock.as_raw_fd(), &mut b, nix::sys::socket::MsgFlags::MSG_PEEK)
                    .map_err(io::Error::from)
            }),
            Stream::Tcp(s) => s.sock.set_read_timeout(Some(wait)).and_then(|_| s.sock.peek(&mut b)),
            Stream::Tls(s) => s.sock.sock.set_read_timeout(Some(wait)).and_then(|_| s.sock.sock.peek(&mut b)),
        };
        match r {
            // 0 bytes: the peer closed; the read that follows reports it.
            Ok(_) => Ok(true),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn left_for_wait(&self) -> io::Result<Duration> {
        match &self.stream {
            Stream::Unix(s) => s.left(),
            Stream::Tcp(s) => s.left(),
            Stream::Tls(s) => s.sock.left(),
        }
    }

    fn io(&mut self) -> &mut dyn Io {
        match &mut self.stream {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
            Stream::Tls(s) => s.as_mut(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.io().read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.io().write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    // For TLS this pushes the buffered records to the socket.
    fn flush(&mut self) -> io::Result<()> {
        self.io().flush()
    }
}

/// Map a socket error: timeouts (EAGAIN on Linux unix sockets, ETIMEDOUT
/// elsewhere) are the deadline, rustls failures arrive wrapped in
/// `InvalidData` and become [`Error::Tls`].
pub(crate) fn map_io(e: io::Error) -> Error {
    if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
        return Error::DeadlineExceeded;
    }
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(t) => Error::Tls(tls::describe(t)),
        None => Error::Io(e),
    }
}

/// Connect to one remote within `deadline` (for a member of a list, the
/// caller passes only that member's share of the time left, so one
/// black-holed cluster member cannot use up the budget of the others).
pub(crate) fn connect(remote: &Remote, tls: Option<&Arc<ClientConfig>>, deadline: Deadline) -> Result<Conn, Error> {
    // Plain socket errors name the remote; deadline and TLS errors stand alone.
    let connect_err = |e| match e {
        Error::Io(source) => Error::Connect { remote: remote.to_string(), source },
        other => other,
    };
    let stream = match remote {
        Remote::Unix(path) => {
            let sock = unix_connect(path, deadline).map_err(connect_err)?;
            Stream::Unix(Timed { sock, deadline })
        }
        Remote::Tcp { host, port } => {
            let sock = tcp_connect(host, *port, deadline).map_err(connect_err)?;
            Stream::Tcp(Timed { sock, deadline })
        }
        Remote::Ssl { host, port } => {
            let config = tls.ok_or_else(|| Error::Tls("no TLS configuration".into()))?;
            let name = tls::server_name(host)?;
            let sock = tcp_connect(host, *port, deadline).map_err(connect_err)?;
            let conn = ClientConnection::new(config.clone(), name).map_err(|e| Error::Tls(tls::describe(&e)))?;
            let mut s = StreamOwned::new(conn, Timed { sock, deadline });
            // Finish the handshake now, so certificate problems surface as
            // connect failures (and the next remote is tried).
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock).map_err(|e| connect_err(map_io(e)))?;
            }
            Stream::Tls(Box::new(s))
        }
    };
    Ok(Conn { stream, read: 0, written: 0 })
}

/// Addresses of `host:port`, within the deadline.
///
/// IP literals (the usual form of an NB remote) need no lookup. A host name
/// goes through getaddrinfo, which std cannot time out, so it runs on a
/// helper thread that is abandoned if the deadline passes first: a hung
/// resolver must not hang the command, since CloudStack never kills us.
fn resolve(host: &str, port: u16, deadline: Deadline) -> Result<Vec<std::net::SocketAddr>, Error> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
        return Ok(vec![std::net::SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(Error::Io)?;
    match rx.recv_timeout(deadline.remaining()?) {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::DeadlineExceeded),
    }
}

/// connect(2) on a unix socket blocks while the server's listen backlog is
/// full (a stalled server: every abandoned attempt stays queued), and std
/// offers no timeout for it, so it runs on a helper thread that is abandoned
/// when the deadline runs out, as [`resolve`] does.
/// Returns `Error::Io` for failures that should become `Error::Connect`.
fn unix_connect(path: &std::path::Path, deadline: Deadline) -> Result<UnixStream, Error> {
    let slice = deadline.remaining()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(owned));
        })
        .map_err(Error::Io)?;
    match rx.recv_timeout(slice.max(Duration::from_millis(1))) {
        Ok(result) => Ok(result?),
        Err(_) if deadline.expired() => Err(Error::DeadlineExceeded),
        Err(_) => Err(Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "connect did not complete within its share of the deadline (listen backlog full?)",
        ))),
    }
}

/// Returns `Error::Io` for failures that should become `Error::Connect`.
fn tcp_connect(host: &str, port: u16, deadline: Deadline) -> Result<TcpStream, Error> {
    let addrs = resolve(host, port, deadline)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address");
    for addr in addrs {
        let slice = deadline.remaining()?;
        match TcpStream::connect_timeout(&addr, slice.max(Duration::from_millis(1))) {
            Ok(sock) => {
                // One JSON request per write; don't let Nagle hold it back.
                sock.set_nodelay(true)?;
                return Ok(sock);
            }
            Err(_) if deadline.expired() => return Err(Error::DeadlineExceeded),
            Err(e) => last = e,
        }
    }
    Err(Error::Io(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_need_no_lookup() {
        let d = Deadline::after(Duration::from_secs(1));
        assert_eq!(resolve("127.0.0.1", 6641, d).unwrap(), vec!["127.0.0.1:6641".parse().unwrap()]);
        assert_eq!(resolve("[::1]", 6641, d).unwrap(), vec!["[::1]:6641".parse().unwrap()]);
    }

    #[test]
    fn host_names_resolve_within_the_deadline() {
        let addrs = resolve("localhost", 6641, Deadline::after(Duration::from_secs(5))).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 6641), "{addrs:?}");
        let spent = Deadline::after(Duration::from_micros(1));
        std::thread::sleep(Duration::from_millis(2));
        assert!(matches!(resolve("localhost", 6641, spent), Err(Error::DeadlineExceeded)));
    }
}
