//! The service's HTTP endpoints on `service.metrics_listen`: `GET /healthz` (200 or 503 with a
//! JSON body) and `GET /metrics` (Prometheus text format). Nothing else is served, and only on
//! the configured address (off by default).
//!
//! Clients cannot starve the service of file descriptors ([`Limits`]): at most 64 connections
//! are served at once (one more is closed as soon as it is accepted, with a warning in the log at
//! most once a minute), a connection is closed after 10 s without traffic, and no request is read
//! on a connection older than 60 s (a client trickling bytes cannot hold its slot).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(10),
            max_age: Duration::from_secs(60),
        }
    }
}

/// Accepts connections while fewer than the cap are open; one more is closed at once.
struct CappedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
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
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => return (Guarded::new(stream, slot, self.limits), addr),
                Err(_) => {
                    drop(stream);
                    let cap = self.limits.max_connections;
                    self.warn(|| {
                        format!(
                            "health and metrics: {cap} connections are open (the most served at \
                             once); new ones are closed until some end (from {addr} and maybe \
                             others)"
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

/// An accepted connection: holds its slot, and fails its reads and writes once it has been idle
/// too long or has grown too old (the server then closes it).
struct Guarded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    closes_at: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl Guarded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, limits: Limits) -> Guarded {
        let now = Instant::now();
        let closes_at = now + limits.max_age;
        Guarded {
            stream,
            _slot: slot,
            idle_timeout: limits.idle_timeout,
            closes_at,
            deadline: Box::pin(tokio::time::sleep_until(
                (now + limits.idle_timeout).min(closes_at),
            )),
        }
    }

    /// Traffic: the idle time starts again (never past the connection's age limit).
    fn touch(&mut self) {
        let at = (Instant::now() + self.idle_timeout).min(self.closes_at);
        self.deadline.as_mut().reset(at);
    }

    /// The stream is waiting: a timeout error once the deadline has passed, else pending.
    fn expired<T>(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the health and metrics client was idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
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
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        let read = buf.filled().len() > before;
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
    let addr = parse_listen(listen).map_err(crate::errors::ConfigError)?;
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
    async fn idle_connections_beyond_the_cap_are_closed_at_once_the_others_when_idle() {
        let idle = Duration::from_secs(2);
        let srv = server(Limits {
            max_connections: 4,
            idle_timeout: idle,
            max_age: Duration::from_secs(60),
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
        // 4 were served (and closed only once idle for 2 s), 16 were closed at once
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
    async fn a_trickling_client_is_closed_at_the_age_limit_and_keep_alive_still_works() {
        let srv = server(Limits {
            max_connections: 4,
            idle_timeout: Duration::from_millis(800),
            max_age: Duration::from_secs(2),
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
        // a header trickled a byte every 100 ms is never idle, but is cut at 2 s
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
