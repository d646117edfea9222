//! The HTTP endpoint: `GET /metrics` (the registry's text exposition), `/healthz` and
//! `/readyz` (Kubernetes probes).
//!
//! hyper on a single-threaded tokio runtime of its own thread: connections are served
//! concurrently, so idle or trickling clients cannot hold a scrape. Each connection must send
//! its request head within [`HEAD_DEADLINE`] and is closed after [`CONNECTION_DEADLINE`]; at most
//! [`MAX_CONNECTIONS`] are open at once, and further ones are closed as they arrive.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{oneshot, Semaphore};

use super::Shared;
use crate::error::{Error, Result};

/// Time a client has to send its request head.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Time a connection may stay open in all.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;
/// `/readyz` fails when the replay buffer has not committed for this long.
pub const READY_COMMIT_AGE: Duration = Duration::from_secs(300);

/// A running endpoint; dropping it stops the thread.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` and serves `metrics` until dropped.
    pub fn start(addr: &str, metrics: Shared) -> Result<Server> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            Error::Runtime(format!(
                "metrics endpoint: cannot listen on {addr}: {e} (choose another with --metrics HOST:PORT, or --metrics off)"
            ))
        })?;
        let fail = |e: std::io::Error| Error::Runtime(format!("metrics endpoint: {e}"));
        let local = listener.local_addr().map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(fail)?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("tidemark-metrics".into())
            .spawn(move || runtime.block_on(serve(listener, metrics, stopped)))
            .map_err(fail)?;
        Ok(Server {
            addr: local,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections until `stopped`; open connections end with the runtime.
async fn serve(
    listener: std::net::TcpListener,
    metrics: Shared,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics endpoint: {e}");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let conn = tokio::select! {
            _ = &mut stopped => return,
            c = listener.accept() => c,
        };
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over the bound, the newcomer is closed at once rather than left in the backlog.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_DEADLINE)
                .keep_alive(false)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_DEADLINE, conn).await {
                Ok(Err(e)) => tracing::debug!("metrics endpoint: {e}"),
                Err(_) => tracing::debug!("metrics endpoint: connection past its deadline"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

/// The response to one request.
fn answer(req: &Request<Incoming>, metrics: &Shared) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, kind, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        (&Method::GET, "/healthz") => (StatusCode::OK, TEXT, "ok\n".into()),
        (&Method::GET, "/readyz") => match metrics.readiness(READY_COMMIT_AGE) {
            Ok(()) => (StatusCode::OK, TEXT, "ready\n".into()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
        },
        (&Method::GET, "/") => (
            StatusCode::OK,
            TEXT,
            "tidemark: metrics at /metrics, probes at /healthz and /readyz\n".into(),
        ),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n".into()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    r
}
