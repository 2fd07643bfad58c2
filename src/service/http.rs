//! The service's HTTP endpoints on `service.metrics_listen`: `GET /healthz` (200 or 503 with a
//! JSON body) and `GET /metrics` (Prometheus text format). Nothing else is served, and only on
//! the configured address (off by default).
//!
//! Clients cannot starve the service of file descriptors, nor keep `/healthz` from answering
//! ([`Limits`]): at most 64 connections are served at once; a connection is closed after 10 s
//! without traffic, when a request's head (request line and headers) has not fully arrived 5 s
//! after it began (its total time, however often bytes trickle in), and when it is 60 s old and
//! waits for its client. When every slot is taken, a new connection closes the one that has
//! waited longest for its client (in a request's head, or idle between requests) and takes its
//! slot, so clients that hold connections open cannot keep a liveness probe out; only when
//! every connection is busy with a request is the new one closed at once (with a warning in the
//! log at most once a minute).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::{Status, StopHandle};

/// What the server allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection that neither sends nor receives a byte for this long is closed.
    pub idle_timeout: Duration,
    /// A connection is closed when it is this old and waits for its client.
    pub max_age: Duration,
    /// A request's head (request line and headers) must arrive whole within this time from its
    /// first byte (from the connection's start for the first request), however often bytes come.
    pub head_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(10),
            max_age: Duration::from_secs(60),
            head_timeout: Duration::from_secs(5),
        }
    }
}

/// What a connection is doing, shared with the listener (which may close it for a new one).
#[derive(Debug, Default)]
struct ConnState {
    /// Since when it waits for its client (a request's head, or the next request); `None`
    /// while a request is served.
    waiting_since: Option<Instant>,
    /// The listener closed it to serve a new connection.
    evicted: bool,
    /// Woken when evicted.
    waker: Option<Waker>,
}

type Shared = Arc<Mutex<ConnState>>;

/// The open connections' states.
#[derive(Clone, Default)]
struct Registry(Arc<Mutex<Vec<Shared>>>);

impl Registry {
    fn add(&self, state: Shared) {
        if let Ok(mut v) = self.0.lock() {
            v.push(state);
        }
    }

    fn remove(&self, state: &Shared) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|s| !Arc::ptr_eq(s, state));
        }
    }

    /// Closes the connection that has waited longest for its client; false when every
    /// connection is serving a request (or already closing).
    fn evict_longest_waiting(&self) -> bool {
        let Ok(v) = self.0.lock() else {
            return false;
        };
        let victim = v
            .iter()
            .filter_map(|s| {
                let st = s.lock().ok()?;
                (!st.evicted)
                    .then_some(st.waiting_since)
                    .flatten()
                    .map(|t| (t, s))
            })
            .min_by_key(|(t, _)| *t)
            .map(|(_, s)| s.clone());
        drop(v);
        let Some(victim) = victim else {
            return false;
        };
        let Ok(mut st) = victim.lock() else {
            return false;
        };
        st.evicted = true;
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        true
    }
}

/// Accepts connections while fewer than the cap are open; one more is closed at once.
struct CappedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    registry: Registry,
    limits: Limits,
    /// When the last "too many connections" or accept error was logged (once a minute at most).
    last_warning: Option<Instant>,
}

impl CappedListener {
    fn warn(&mut self, message: impl FnOnce() -> String) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now - t >= Duration::from_secs(60))
        {
            self.last_warning = Some(now);
            tracing::warn!("{}", message());
        }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // out of descriptors or a connection reset before it was accepted: wait a
                    // moment rather than spin
                    self.warn(|| format!("health and metrics: accepting a connection failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = match self.slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                // every slot is taken: the connection waiting longest for its client makes
                // room (a liveness probe is never kept out by clients holding connections)
                Err(_) if self.registry.evict_longest_waiting() => {
                    let cap = self.limits.max_connections;
                    self.warn(|| {
                        format!(
                            "health and metrics: {cap} connections are open (the most served at \
                             once); the one waiting longest for its client is closed for a new \
                             one (from {addr} and maybe others)"
                        )
                    });
                    tokio::time::timeout(EVICTION_WAIT, self.slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                Err(_) => None,
            };
            match slot {
                Some(slot) => {
                    return (
                        Guarded::new(stream, slot, self.limits, &self.registry),
                        addr,
                    );
                }
                None => {
                    drop(stream);
                    let cap = self.limits.max_connections;
                    self.warn(|| {
                        format!(
                            "health and metrics: {cap} connections are open (the most served at \
                             once) and all are serving requests; new ones are closed until some \
                             end (from {addr} and maybe others)"
                        )
                    });
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// How long a new connection waits for the slot of the connection it closed.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// An accepted connection: holds its slot, and fails its reads and writes once it has been idle
/// too long, its request's head is late, it has grown too old, or the listener closed it for a
/// new connection (the server then closes it).
struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    head_timeout: Duration,
    closes_at: Instant,
    /// Since when the current request's head has been arriving (`None` between requests).
    head_since: Option<Instant>,
    /// The last two bytes read, to find the blank line that ends a head.
    last: [u8; 2],
    state: Shared,
    registry: Registry,
    deadline: Pin<Box<Sleep>>,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.registry.remove(&self.state);
    }
}

impl Guarded {
    fn new(
        stream: TcpStream,
        slot: OwnedSemaphorePermit,
        limits: Limits,
        registry: &Registry,
    ) -> Guarded {
        let now = Instant::now();
        let state = Arc::new(Mutex::new(ConnState {
            waiting_since: Some(now),
            ..ConnState::default()
        }));
        registry.add(state.clone());
        let mut g = Guarded {
            stream,
            _slot: slot,
            idle_timeout: limits.idle_timeout,
            head_timeout: limits.head_timeout,
            closes_at: now + limits.max_age,
            // the first request's head is timed from the connection's start
            head_since: Some(now),
            last: [0; 2],
            state,
            registry: registry.clone(),
            deadline: Box::pin(tokio::time::sleep_until(now)),
        };
        g.touch();
        g
    }

    /// Traffic: the idle time starts again (never past the connection's age limit, nor past
    /// the time its request's head must have arrived by).
    fn touch(&mut self) {
        let mut at = (Instant::now() + self.idle_timeout).min(self.closes_at);
        if let Some(since) = self.head_since {
            at = at.min(since + self.head_timeout);
        }
        self.deadline.as_mut().reset(at);
    }

    /// Follows the requests' heads in the bytes read: a head begins with its first byte and
    /// ends with a blank line (CRLF CRLF, or LF LF).
    fn read_bytes(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        for &b in bytes {
            if self.head_since.is_none() {
                self.head_since = Some(now);
                self.set_waiting(Some(now), false);
            }
            let [before, prev] = self.last;
            if b == b'\n' && (prev == b'\n' || (prev == b'\r' && before == b'\n')) {
                // the head is whole: the request is served now
                self.head_since = None;
                self.last = [0; 2];
                self.set_waiting(None, true);
            } else {
                self.last = [prev, b];
            }
        }
    }

    /// Bytes written: a response; between requests the connection waits for its client again.
    fn wrote(&mut self) {
        if self.head_since.is_none() {
            self.set_waiting(Some(Instant::now()), false);
        }
    }

    /// Records what the connection waits for: `since` (keeping an earlier time unless
    /// `replace`), or `None` while a request is served.
    fn set_waiting(&self, since: Option<Instant>, replace: bool) {
        if let Ok(mut st) = self.state.lock() {
            st.waiting_since = match (st.waiting_since, since) {
                (Some(old), Some(_)) if !replace => Some(old),
                (_, new) => new,
            };
        }
    }

    /// The stream is waiting: an error once the listener closed the connection or the deadline
    /// has passed, else pending.
    fn expired<T>(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<T>> {
        if let Some(e) = self.evicted(cx) {
            return Poll::Ready(Err(e));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the health and metrics client was idle too long, or sent its request too slowly",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The error to end with when the listener closed this connection for a new one; else the
    /// task is woken when it does.
    fn evicted(&self, cx: &mut TaskContext<'_>) -> Option<io::Error> {
        let mut st = self.state.lock().ok()?;
        if st.evicted {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to serve a new health and metrics client (all connections were taken)",
            ));
        }
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.waker = Some(cx.waker().clone());
        }
        None
    }

    /// A stream call's result: traffic resets the idle time, waiting runs into the deadline.
    fn after<T>(
        &mut self,
        cx: &mut TaskContext<'_>,
        poll: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(Ok(v)) => {
                if moved(&v) {
                    self.touch();
                }
                Poll::Ready(Ok(v))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.expired(cx),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.evicted(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = buf.filled().len() > before;
        if read {
            this.read_bytes(&buf.filled()[before..]);
        }
        this.after(cx, poll, |()| read)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote();
        }
        this.after(cx, poll, |n| *n > 0)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.after(cx, poll, |()| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.after(cx, poll, |()| false)
    }
}

/// Parses `service.metrics_listen`: `address:port` (`localhost:PORT` is 127.0.0.1).
pub fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    let v = match raw.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => raw.to_string(),
    };
    v.parse::<SocketAddr>().map_err(|_| {
        format!(
            "`{raw}` is not an address and port; e.g. 127.0.0.1:9464 (this machine only) or \
             0.0.0.0:9464 (every interface)"
        )
    })
}

/// The running HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    /// Stops serving (requests in flight finish).
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn healthz(State(status): State<Arc<Status>>) -> Response {
    let h = status.health(chrono::Utc::now());
    let code = if h.error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(h)).into_response()
}

async fn metrics(State(status): State<Arc<Status>>) -> Response {
    match status.metrics_text() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}

/// Binds `listen` and serves the endpoints until shut down (or `stop`), with the default
/// [`Limits`].
pub async fn serve(listen: &str, status: Arc<Status>, stop: StopHandle) -> anyhow::Result<Server> {
    serve_with(listen, Limits::default(), status, stop).await
}

/// As [`serve`], with the given limits.
pub async fn serve_with(
    listen: &str,
    limits: Limits,
    status: Arc<Status>,
    stop: StopHandle,
) -> anyhow::Result<Server> {
    let addr = parse_listen(listen).map_err(crate::errors::Failure::Config)?;
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!(
            "service.metrics_listen: cannot listen on {addr} (another program may use the port, \
             or the address is not one of this machine's)"
        )
    })?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "health and metrics are served on {addr}, reachable from other machines \
             (service.metrics_listen)"
        );
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(status);
    let listener = CappedListener {
        inner: listener,
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        registry: Registry::default(),
        limits,
        last_warning: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            tokio::select! {
                _ = rx => {}
                () = stop.stopped() => {}
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("the health and metrics server stopped: {e}");
        }
    });
    tracing::info!("health and metrics on http://{addr}/healthz and /metrics");
    Ok(Server {
        addr,
        task,
        stop: tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn server(limits: Limits) -> Server {
        let store = crate::store::Store::open_in_memory().unwrap();
        let status = Arc::new(Status::from_history(&store).unwrap());
        serve_with("127.0.0.1:0", limits, status, StopHandle::new())
            .await
            .unwrap()
    }

    /// Waits (at most `within`) for the server to close `s`: how long after `since` it did.
    async fn closed_after(mut s: TcpStream, since: Instant, within: Duration) -> Option<Duration> {
        let mut buf = [0u8; 512];
        let end = since + within;
        loop {
            match tokio::time::timeout_at(end, s.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// One request, `Connection: close`: the whole response.
    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut text = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text)).await;
        text
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_cap_close_the_longest_waiting_the_others_close_when_idle() {
        let idle = Duration::from_secs(2);
        let srv = server(Limits {
            max_connections: 4,
            idle_timeout: idle,
            max_age: Duration::from_secs(60),
            head_timeout: Duration::from_secs(30),
        })
        .await;
        let start = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..20 {
            let s = TcpStream::connect(srv.addr).await.unwrap();
            waits.push(tokio::spawn(closed_after(
                s,
                start,
                Duration::from_secs(20),
            )));
        }
        let mut closed = Vec::new();
        for w in waits {
            closed.push(w.await.unwrap().expect("every idle connection is closed"));
        }
        // 16 made room for newer ones at once, the last 4 were closed only once idle for 2 s
        let early = closed.iter().filter(|t| **t < idle).count();
        assert_eq!(early, 16, "{closed:?}");
        assert!(
            closed.iter().all(|t| *t < Duration::from_secs(15)),
            "{closed:?}"
        );
        // the slots are free again: /healthz answers (503: no run has finished yet)
        let answer = get(srv.addr, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("no run has finished yet"), "{answer}");
        srv.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trickled_head_is_cut_at_its_total_time_and_keep_alive_still_works() {
        let srv = server(Limits {
            max_connections: 4,
            idle_timeout: Duration::from_millis(800),
            max_age: Duration::from_secs(60),
            head_timeout: Duration::from_secs(2),
        })
        .await;
        // two requests on one connection are both answered
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text))
            .await
            .unwrap()
            .unwrap();
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(
            text.contains("HTTP/1.1 200") && text.contains("directory_connector_runs_total"),
            "{text}"
        );
        // a keep-alive connection between requests waits (less than the idle time) longer than
        // the head limit, then asks again: answered
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        for round in 0..4 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let head = String::from_utf8_lossy(&buf[..n]);
            assert!(head.starts_with("HTTP/1.1 503"), "round {round}: {head}");
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        // a header trickled a byte every 100 ms is never idle, but is cut 2 s after it began
        let start = Instant::now();
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let cut = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"a").await.is_err() || start.elapsed() > Duration::from_secs(20) {
                break start.elapsed();
            }
            let mut buf = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            {
                break start.elapsed();
            }
        };
        assert!(
            cut >= Duration::from_secs(2) && cut < Duration::from_secs(10),
            "closed after {cut:?}"
        );
        srv.shutdown().await;
    }

    /// A client that holds a connection with a request head it sends a byte at a time (a new
    /// connection whenever the server closes it), until `stop`.
    async fn drip(addr: SocketAddr, every: Duration, stop: Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::Ordering;
        while !stop.load(Ordering::SeqCst) {
            let Ok(mut s) = TcpStream::connect(addr).await else {
                tokio::time::sleep(every).await;
                continue;
            };
            if s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                .await
                .is_err()
            {
                continue;
            }
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(every).await;
                if s.write_all(b"a").await.is_err() {
                    break;
                }
            }
        }
    }

    /// Issue 26 item 9: 64 clients sending a byte of a request head every few seconds kept every
    /// slot (never idle, and the age limit freed them only after 60 s, to be taken again), so
    /// `/healthz` was refused for as long as they went on and a liveness probe would restart a
    /// healthy service.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthz_answers_while_slow_clients_hold_every_connection() {
        let limits = Limits::default();
        let srv = server(limits).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drips: Vec<_> = (0..limits.max_connections)
            .map(|_| tokio::spawn(drip(srv.addr, Duration::from_secs(1), stop.clone())))
            .collect();
        // they hold every slot
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let start = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(20), get(srv.addr, "/healthz"))
            .await
            .unwrap_or_default();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("no run has finished yet"),
            "/healthz after {:?}: {answer:?}",
            start.elapsed()
        );
        for d in drips {
            let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
        }
        srv.shutdown().await;
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:9464").unwrap(),
            "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:9464").unwrap(),
            "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_listen("[::1]:9464").is_ok());
        let e = parse_listen("9464").unwrap_err();
        assert!(e.contains("127.0.0.1:9464"), "{e}");
    }
}
