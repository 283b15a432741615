//! The agent's HTTP front: tokio and hyper's HTTP/1 server for every
//! network's :80 and :8080 (docs/metadata.md).
//!
//! Only `cloudstack-ovn agent` builds a [`Server`]; the per-exec CloudStack
//! commands never start a runtime.
//!
//! `--workers` threads each drive a current-thread runtime (a shard); a
//! network's listeners and their connections live on shard `network % n`.
//! Not tokio's multi-thread runtime: its scheduler calls `f64::powf`, which
//! makes every exec of this binary map libm (measured: +0.065 ms on a
//! 1.06 ms `prepare-nic` exec-to-exit, the CloudStack hot path), and a
//! request here is microseconds of work, so work stealing buys nothing.
//!
//! Why async: a thread pool lets a few clients that connect and never finish
//! their request head hold every worker (5 s each) while every other VM
//! waits (tests/userdata.rs `slow_clients_cannot_starve_other_vms` timed out
//! against the old pool). Here a hung connection costs one task and one
//! socket until the header timeout, and the limits below are per source.
//!
//! Limits, from the outside in:
//! * [`Limits::total`] connections open at once (all networks): beyond it a
//!   canned 429 is written and the socket closed without reading;
//! * [`Limits::per_source_conns`] connections open at once per (network,
//!   source IP), the same;
//! * the request head must arrive within [`Limits::header_timeout`] and fit
//!   in [`Limits::max_head`] (hyper answers 431 beyond it);
//! * [`Limits::per_source_requests`] requests being answered at once per
//!   (network, source IP), and the per-source token bucket: 429;
//! * the whole connection lives at most [`Limits::conn_timeout`].
//!
//! One answer per connection (keep-alive off), like the virtual router's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use super::serve::{RateLimit, Request, Response};
use crate::log;

const SERVER: &str = "CloudStack Password Server";

/// The request limits (module doc); [`Limits::default`] is what the agent uses.
#[derive(Clone, Debug)]
pub struct Limits {
    pub total: usize,
    pub per_source_conns: usize,
    pub per_source_requests: usize,
    pub header_timeout: Duration,
    pub conn_timeout: Duration,
    /// hyper's read buffer cap: 8 KiB is also hyper's smallest.
    pub max_head: usize,
    pub rate: f64,
    pub burst: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            total: 1024,
            // Hung connections of one VM count here, not against its
            // requests: its own well-formed requests still get answered.
            per_source_conns: 32,
            per_source_requests: 8,
            header_timeout: Duration::from_secs(5),
            // Above the password server's worst SB wait (2 s on the old
            // connection, a reconnect within 5 s, 2 s again: 7.3 s measured
            // without SB quorum), so it answers rather than being cut off;
            // cloud-init's password client itself waits 20 s.
            conn_timeout: Duration::from_secs(20),
            max_head: 8 * 1024,
            rate: 20.0,
            burst: 40.0,
        }
    }
}

/// Where a request came from.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub network: u64,
    pub port: u16,
    pub src: IpAddr,
    /// When the connection was accepted: logged latencies start here, so
    /// they include reading the head and any wait for a thread.
    pub accepted: Instant,
}

/// Answers one parsed request. It may block (the password server's SB
/// select): :8080 requests run it on tokio's blocking pool.
pub type Handler = Arc<dyn Fn(&Meta, &Request) -> Response + Send + Sync>;

/// Counts per (network, source IP) of what is open, with a cap taken at
/// [`Slots::take`] and given back when the [`Slot`] drops.
#[derive(Default)]
pub struct Slots {
    counts: Mutex<HashMap<(u64, IpAddr, Kind), usize>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Conn,
    Request,
}

pub struct Slot {
    slots: Arc<Slots>,
    key: (u64, IpAddr, Kind),
}

impl Slots {
    pub fn take(self: &Arc<Self>, network: u64, src: IpAddr, kind: Kind, cap: usize) -> Option<Slot> {
        let mut c = self.counts.lock().ok()?;
        let key = (network, src, kind);
        let n = c.entry(key).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(Slot { slots: self.clone(), key })
    }

    pub fn len(&self) -> usize {
        self.counts.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.slots.counts.lock() {
            // Entries go with their last slot: the map stays O(sources
            // with something open), not O(sources ever seen).
            if let Some(n) = c.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.remove(&self.key);
                }
            }
        }
    }
}

struct Inner {
    handler: Handler,
    limits: Limits,
    total: Arc<Semaphore>,
    slots: Arc<Slots>,
    rate: RateLimit,
}

/// The shards and what every listener shares.
pub struct Server {
    shards: Vec<tokio::runtime::Handle>,
    inner: Arc<Inner>,
}

/// A listener being served; dropping it stops accepting (connections
/// already accepted finish within their timeouts).
pub struct Listening(tokio::task::AbortHandle);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Server {
    /// `workers` shards (at least 1), each a thread driving its runtime
    /// for the life of the process.
    pub fn new(workers: usize, limits: Limits, handler: Handler) -> std::io::Result<Server> {
        let mut shards = Vec::new();
        for i in 0..workers.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .thread_name(format!("md-http-{i}"))
                // :8080 answers wait on one shared SB connection anyway;
                // more threads would only queue on its lock (and cost memory).
                .max_blocking_threads(16)
                .enable_io()
                .enable_time()
                .build()?;
            shards.push(rt.handle().clone());
            // A current-thread runtime runs its tasks only inside block_on.
            std::thread::Builder::new().name(format!("md-http-{i}")).spawn(move || {
                rt.block_on(std::future::pending::<()>());
            })?;
        }
        let inner = Arc::new(Inner {
            handler,
            total: Arc::new(Semaphore::new(limits.total)),
            slots: Arc::new(Slots::default()),
            rate: RateLimit::new(limits.rate, limits.burst),
            limits,
        });
        Ok(Server { shards, inner })
    }

    /// Serve `listener` (opened inside the network's namespace) until the
    /// returned handle drops.
    pub fn serve(&self, network: u64, port: u16, listener: std::net::TcpListener) -> Result<Listening, String> {
        listener.set_nonblocking(true).map_err(|e| format!("listener :{port}: {e}"))?;
        let shard = &self.shards[(network % self.shards.len() as u64) as usize];
        let _in_runtime = shard.enter();
        let l = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("listener :{port}: {e}"))?;
        let task = shard.spawn(accept_loop(l, network, port, self.inner.clone()));
        Ok(Listening(task.abort_handle()))
    }
}

/// The peer as the view knows it (IPv4-mapped IPv6 as IPv4).
fn source(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Pause after a failed accept(2): EMFILE/ENFILE/ENOBUFS persist for a
/// while and would spin the loop; a reset peer (ECONNABORTED) does not.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn accept_loop(l: tokio::net::TcpListener, network: u64, port: u16, inner: Arc<Inner>) {
    let mut failures = 0u64;
    loop {
        match l.accept().await {
            Ok((stream, peer)) => {
                let src = source(peer);
                let total = inner.total.clone().try_acquire_owned().ok();
                let slot = inner.slots.take(network, src, Kind::Conn, inner.limits.per_source_conns);
                match (total, slot) {
                    (Some(total), Some(slot)) => {
                        let meta = Meta { network, port, src, accepted: Instant::now() };
                        tokio::spawn(connection(stream, meta, inner.clone(), (total, slot)));
                    }
                    _ => {
                        log::debug(
                            "too many connections, refused",
                            &[("network", &network), ("port", &port), ("src", &src)],
                        );
                        refuse(stream);
                    }
                }
            }
            Err(e) => {
                // Never ends the loop: a listener that stops accepting
                // would leave the network without metadata until restart.
                failures += 1;
                if failures == 1 || failures % 100 == 0 {
                    log::warn(
                        "accept failed, retrying",
                        &[("network", &network), ("port", &port), ("error", &e), ("failures", &failures)],
                    );
                }
                if e.kind() != std::io::ErrorKind::ConnectionAborted {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Over a connection cap: a canned 429 if the socket takes it at once, then
/// close; nothing is read or waited for.
fn refuse(stream: tokio::net::TcpStream) {
    const TOO_MANY: &[u8] =
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 18\r\nConnection: close\r\n\r\nToo Many Requests\n";
    let _ = stream.try_write(TOO_MANY);
}

async fn connection(
    stream: tokio::net::TcpStream,
    meta: Meta,
    inner: Arc<Inner>,
    _held: (tokio::sync::OwnedSemaphorePermit, Slot),
) {
    let limits = &inner.limits;
    let svc_inner = inner.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let inner = svc_inner.clone();
        async move { Ok::<_, Infallible>(respond(&inner, meta, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), svc);
    match tokio::time::timeout(limits.conn_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::debug(
            "connection ended",
            &[("network", &meta.network), ("port", &meta.port), ("src", &meta.src), ("error", &e)],
        ),
        Err(_) => {
            log::debug("connection timed out", &[("network", &meta.network), ("port", &meta.port), ("src", &meta.src)])
        }
    }
}

fn too_many() -> Response {
    Response { status: 429, body: b"Too Many Requests\n".to_vec() }
}

async fn respond(inner: &Arc<Inner>, meta: Meta, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let answer = match inner.slots.take(meta.network, meta.src, Kind::Request, inner.limits.per_source_requests) {
        None => too_many(),
        Some(_slot) if !inner.rate.allow(meta.network, meta.src) => too_many(),
        Some(_slot) => {
            let r = request(&req);
            if meta.port == 80 {
                (inner.handler)(&meta, &r)
            } else {
                // The password server may wait on the SB (2 s deadline):
                // off the runtime's threads.
                let h = inner.handler.clone();
                tokio::task::spawn_blocking(move || h(&meta, &r))
                    .await
                    .unwrap_or(Response { status: 500, body: b"Internal Server Error\n".to_vec() })
            }
        }
    };
    if answer.status == 429 {
        log::info(
            "request",
            &[
                ("network", &meta.network),
                ("src", &meta.src),
                ("port", &meta.port),
                ("status", &answer.status),
                ("latency_ms", &format!("{:.3}", meta.accepted.elapsed().as_secs_f64() * 1000.0)),
            ],
        );
    }
    to_hyper(answer)
}

/// hyper's parsed head as the pure answer functions see it.
fn request<B>(req: &hyper::Request<B>) -> Request {
    let headers = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.trim().to_string())))
        .collect();
    Request { method: req.method().as_str().to_string(), path: req.uri().path().to_string(), headers }
}

fn to_hyper(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(hyper::header::SERVER, hyper::header::HeaderValue::from_static(SERVER));
    h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_per_source_and_kind_and_are_given_back() {
        let s = Arc::new(Slots::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let held: Vec<Slot> = (0..3).map(|_| s.take(1, a, Kind::Conn, 3).unwrap()).collect();
        assert!(s.take(1, a, Kind::Conn, 3).is_none(), "a fourth connection of one source");
        assert!(s.take(1, a, Kind::Request, 3).is_some(), "requests are counted apart from connections");
        assert!(s.take(1, b, Kind::Conn, 3).is_some(), "another source");
        assert!(s.take(2, a, Kind::Conn, 3).is_some(), "the same address on another network");
        drop(held);
        assert!(s.take(1, a, Kind::Conn, 3).is_some(), "given back on drop");
        assert!(s.is_empty(), "no entry outlives its slots");
    }

    #[test]
    fn requests_convert_for_the_answer_functions() {
        let req = hyper::Request::builder()
            .method("HEAD")
            .uri("/latest/meta-data/?x=1")
            .header("DomU_Request", " send_my_password ")
            .body(())
            .unwrap();
        let r = request(&req);
        assert_eq!((r.method.as_str(), r.path.as_str()), ("HEAD", "/latest/meta-data/"));
        assert_eq!(r.headers.get("domu_request").map(String::as_str), Some("send_my_password"));
        let resp = to_hyper(Response { status: 431, body: b"x".to_vec() });
        assert_eq!(resp.status(), 431);
        assert_eq!(resp.headers()["server"], SERVER);
    }
}
