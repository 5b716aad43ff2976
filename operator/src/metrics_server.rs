//! The plain-HTTP server of every bondnet process's `/metrics` and health paths (the
//! controller's and the webhook's). Each process gives the answer per path as a pure function;
//! this file owns the listening, the timeouts and the shutdown.
//!
//! [`bind`] returns the listener, so a caller that asked for port 0 reads the port the kernel
//! chose from it (and from the log line) instead of probing for a free one and binding again.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// The answer to one path: status, content type, body.
pub type Answer = (StatusCode, &'static str, String);

/// OpenMetrics text, the content type of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `address` (port 0: any free port) and logs the address it got, with `what` it serves.
pub async fn bind(address: SocketAddr, what: &str) -> Result<TcpListener> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| Error::Serve { address, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Serve { address, source })?;
    tracing::info!(address = %bound, "serving {what}");
    Ok(listener)
}

/// Serves `respond`'s answers on `listener` until `shutdown` completes.
pub async fn serve<F>(listener: TcpListener, respond: F, shutdown: impl Future<Output = ()>)
where
    F: Fn(&str) -> Answer + Send + Sync + 'static,
{
    let respond = Arc::new(respond);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, mostly: give the process a moment.
                    tracing::warn!(error = %err, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (status, content_type, body) = respond(request.uri().path());
                let response = Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(Full::new(Bytes::from(body)));
                async move { response }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            if let Err(err) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "metrics connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        reply
    }

    #[tokio::test]
    async fn port_zero_binds_a_port_that_answers_until_shutdown() {
        // The listener is bound before serve starts: no probe, no race for the port.
        let listener = bind("127.0.0.1:0".parse().expect("address"), "tests")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr");
        assert_ne!(address.port(), 0);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            |path| match path {
                "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                _ => (
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "not found\n".to_owned(),
                ),
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let reply = get(address, "/healthz").await;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.contains("content-type: text/plain"), "{reply}");
        assert!(reply.ends_with("ok\n"), "{reply}");
        assert!(get(address, "/nope").await.starts_with("HTTP/1.1 404"));
        stop.send(()).expect("the server is running");
        server.await.expect("serve returns after shutdown");
    }

    #[tokio::test]
    async fn an_address_in_use_is_an_error_naming_it() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = taken.local_addr().expect("addr");
        let err = bind(address, "tests").await.expect_err("in use");
        assert!(err.to_string().contains(&address.to_string()), "{err}");
    }
}
