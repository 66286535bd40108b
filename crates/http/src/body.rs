//! Request bodies read with limits a caller cannot stretch: a size cap (413 beyond it, before
//! anything is done) and a deadline (408 when the body has not arrived in time — a client that
//! trickles a body holds a request slot for that long at most). JSON bodies get errors a
//! caller can act on: malformed JSON, wrong types and missing fields are 400 naming the
//! problem (never 415 or 422).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body accepted (but on the service proxy's routes).
pub const MAX_BODY: usize = 64 * 1024;

/// A body's deadline ran out before it arrived.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(
    /// The time a body had.
    pub Duration,
);

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyDeadline {}

/// A request body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyDeadline(self.limit)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: every request's body must arrive within `limit` of its headers, whoever reads
/// it (JSON, forms, the proxy); a read past that fails.
pub(crate) async fn deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        })
    });
    next.run(request).await
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than {max} bytes"),
    )
}

/// Reads a body of at most `max` bytes: 413 beyond (at once when `Content-Length` says so),
/// 408 when its deadline passes, 400 when the connection fails mid-body.
pub(crate) async fn read_body<S: Send + Sync>(
    req: Request,
    _state: &S,
    max: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    match http_body_util::Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return Err(too_large(max));
            }
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
            while let Some(err) = source {
                if let Some(deadline) = err.downcast_ref::<BodyDeadline>() {
                    return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, deadline.to_string()));
                }
                source = err.source();
            }
            Err(ApiError::bad_request(format!(
                "could not read the request body: {e}"
            )))
        }
    }
}

/// A JSON body. An empty body reads as `{}` (for endpoints whose fields are all optional).
#[derive(Debug)]
pub struct JsonBody<T>(
    /// The parsed body.
    pub T,
);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state, MAX_BODY).await?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        serde_path_to_error::deserialize(value)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                if path == "." {
                    ApiError::bad_request(format!("invalid request: {}", e.inner()))
                } else {
                    ApiError::bad_request(format!("{path}: {}", e.inner()))
                }
            })
    }
}
