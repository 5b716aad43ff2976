//! A mock API server for tests, after kube-rs' tower-test pattern: the test states each
//! request it expects (method, path, and gets the body back to assert on) and the response;
//! a request that never comes fails the test after [`WAIT`].

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use tower_test::mock::{self, Handle, SendResponse};

/// How long the server waits for a request the test expects before it fails the test. A
/// passing test never waits this long (the request comes as soon as the client sends it), so
/// it is generous: on a loaded machine a client may first sit out a backoff (a watch waits
/// 0.5 s before it lists again) and then wait for a CPU. Only a missing request costs it.
pub const WAIT: Duration = Duration::from_secs(30);

/// The server side of a mock client.
pub struct MockApi {
    handle: Handle<Request<Body>, Response<Body>>,
    held: Vec<SendResponse<Response<Body>>>,
}

/// A client whose requests go to the returned [`MockApi`].
pub fn client() -> (Client, MockApi) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, "default"),
        MockApi {
            handle,
            held: Vec::new(),
        },
    )
}

/// A request not answered yet, for tests that serve requests in whatever order they come.
pub struct Incoming {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// Path without query.
    pub path: String,
    /// JSON body (`Null` when empty).
    pub body: serde_json::Value,
    send: SendResponse<Response<Body>>,
}

impl Incoming {
    /// True for a watch request.
    pub fn is_watch(&self) -> bool {
        self.uri.contains("watch=true")
    }

    /// Answers with `status` and the JSON `response`.
    pub fn respond(self, status: StatusCode, response: &serde_json::Value) {
        let reply = Response::builder()
            .status(status)
            .body(Body::from(
                serde_json::to_vec(response).expect("response JSON"),
            ))
            .expect("response");
        self.send.send_response(reply);
    }

    /// Answers a watch with these events, one JSON line each, then ends the stream.
    pub fn respond_events(self, events: &[serde_json::Value]) {
        let mut bytes = Vec::new();
        for event in events {
            bytes.extend(serde_json::to_vec(event).expect("event JSON"));
            bytes.push(b'\n');
        }
        let reply = Response::builder()
            .status(StatusCode::OK)
            .body(Body::from(bytes))
            .expect("response");
        self.send.send_response(reply);
    }
}

/// A request as the mock server saw it.
#[derive(Debug)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// JSON body (`Null` when empty).
    pub body: serde_json::Value,
}

impl MockApi {
    /// Waits for the next request, checks its method and path (without query), answers with
    /// `status` and `response`, and returns what was sent.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        response: serde_json::Value,
    ) -> Seen {
        self.expect_with(method, path, status, |_| response).await
    }

    /// Like [`expect`](Self::expect), answering 200 with the request's own body (as an apply
    /// or create returns the object).
    pub async fn expect_echo(&mut self, method: Method, path: &str) -> Seen {
        self.expect_with(method, path, StatusCode::OK, Clone::clone)
            .await
    }

    /// Like [`expect`](Self::expect), computing the response from the request body.
    pub async fn expect_with(
        &mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        response: impl FnOnce(&serde_json::Value) -> serde_json::Value,
    ) -> Seen {
        let next = tokio::time::timeout(WAIT, self.handle.next_request()).await;
        let (request, send) = next
            .unwrap_or_else(|_| panic!("no request arrived; expected {method} {path}"))
            .unwrap_or_else(|| panic!("the client went away; expected {method} {path}"));
        let uri = request.uri().to_string();
        assert_eq!(request.method(), method, "{uri}");
        assert_eq!(request.uri().path(), path, "{uri}");
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        let response = response(&body);
        let reply = Response::builder()
            .status(status)
            .body(Body::from(
                serde_json::to_vec(&response).expect("response JSON"),
            ))
            .expect("response");
        send.send_response(reply);
        Seen { method, uri, body }
    }

    /// Waits for the next request, whatever it is, and answers it with what `respond` returns
    /// for its method, path and body.
    pub async fn expect_any(
        &mut self,
        respond: impl FnOnce(&Method, &str, &serde_json::Value) -> (StatusCode, serde_json::Value),
    ) -> Seen {
        let next = tokio::time::timeout(WAIT, self.handle.next_request()).await;
        let (request, send) = next
            .unwrap_or_else(|_| panic!("no request arrived"))
            .unwrap_or_else(|| panic!("the client went away"));
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let path = request.uri().path().to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        let (status, response) = respond(&method, &path, &body);
        let reply = Response::builder()
            .status(status)
            .body(Body::from(
                serde_json::to_vec(&response).expect("response JSON"),
            ))
            .expect("response");
        send.send_response(reply);
        Seen { method, uri, body }
    }

    /// The next request, unanswered; fails the test when none arrives within [`WAIT`].
    pub async fn next(&mut self) -> Incoming {
        match self.next_within(WAIT).await {
            Some(incoming) => incoming,
            None => panic!("no request arrived"),
        }
    }

    /// The next request, unanswered, or `None` when none arrives within `wait` (for a test
    /// that asserts the absence of some requests and not of others).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Incoming> {
        let (request, send) = tokio::time::timeout(wait, self.handle.next_request())
            .await
            .ok()?
            .unwrap_or_else(|| panic!("the client went away"));
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let path = request.uri().path().to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        Some(Incoming {
            method,
            uri,
            path,
            body,
            send,
        })
    }

    /// Leaves `incoming` unanswered for as long as the server lives (a watch with no events,
    /// a request that hangs).
    pub fn hold(&mut self, incoming: Incoming) {
        self.held.push(incoming.send);
    }

    /// Asserts that no further request arrives within 100 ms.
    pub async fn expect_no_more(&mut self) {
        let next =
            tokio::time::timeout(Duration::from_millis(100), self.handle.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

/// A Kubernetes `Status` error body.
pub fn status_error(code: u16, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}
