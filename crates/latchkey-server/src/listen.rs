//! Accepting connections with bounds a public server needs (issue 11, item 4): at most
//! `max_connections` at once (more are closed at once, so the process keeps file descriptors for
//! its database and providers), request headers within `header_read_timeout_secs` (slowloris),
//! an idle keep-alive connection closed after the same time, and — in the router's layers — a
//! body deadline and a whole-request deadline. Graceful shutdown finishes requests in flight.

use crate::config::HttpConfig;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Serve `router` on `listener` (in TLS when `tls` is given) until `shutdown` completes, then
/// let open requests finish (at most `request_timeout_secs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    http: &HttpConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(http.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let header_timeout = Duration::from_secs(http.header_read_timeout_secs.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, say: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("latchkey_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(stream, router, peer, header_timeout, stop).await,
                // The handshake is held to the header deadline too: a client that opens a
                // connection and sends half a ClientHello is closed like a slow header.
                Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => connection(tls_stream, router, peer, header_timeout, stop).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "tls handshake failed"),
                    Err(_) => tracing::debug!("tls handshake timed out"),
                },
            }
        });
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    let _ = stop_tx.send(true);
    let drain = Duration::from_secs(http.request_timeout_secs.max(1));
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    Ok(())
}

/// One connection, HTTP/1.1 or HTTP/2, until it ends or the server stops.
async fn connection<S>(
    stream: S,
    router: axum::Router,
    peer: std::net::SocketAddr,
    header_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut req: axum::extract::Request<_>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    });
    let mut builder = Builder::new(TokioExecutor::new());
    // The header timeout also ends a keep-alive connection that sends no next request.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(header_timeout));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
