//! `GET /api/pool/status`'s body, streamed: the reply's small fields first, then `instances`,
//! the live agents a page at a time from the database, in id order (the primary key's index),
//! each read as a listing ([`pool_store::AgentListing`]: no secrets, instructions or creation
//! journal). The fleet is never held whole — at 100,000 agents the list alone is about 60 MiB
//! of JSON, which a replica meant to stay within 64 MiB cannot buffer. The JSON is the same as
//! one built whole: `instances` is the last field.

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pool_store::{AgentId, Store};

use crate::dto::StatusReply;
use crate::error::ApiError;

/// Agents read from the database at a time.
const PAGE: usize = 500;

/// Where the stream is.
enum Part {
    /// The reply's other fields, and the opening of `instances`.
    Head(String),
    /// The page after this agent (`None`: the first), and whether one was written yet.
    Page {
        after: Option<AgentId>,
        first: bool,
    },
    Done,
}

/// The response: `reply`'s fields, then `"instances": [...]` streamed from `store`.
pub(crate) fn respond(reply: &StatusReply, store: Store) -> Result<Response, ApiError> {
    let whole = serde_json::to_string(reply)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let fields = whole.strip_suffix('}').unwrap_or(&whole);
    let head = if fields.len() > 1 {
        format!("{fields},\"instances\":[")
    } else {
        "{\"instances\":[".to_string()
    };
    let stream = futures_util::stream::unfold((Part::Head(head), store), |(part, store)| async move {
        match part {
            Part::Head(head) => Some((
                Ok(Bytes::from(head)),
                (
                    Part::Page {
                        after: None,
                        first: true,
                    },
                    store,
                ),
            )),
            Part::Page { after, first } => match store.live_agents_page(after.as_ref(), PAGE).await {
                Ok(agents) if agents.is_empty() => Some((Ok(Bytes::from_static(b"]}")), (Part::Done, store))),
                Ok(agents) => {
                    let mut chunk = String::new();
                    for (i, agent) in agents.iter().enumerate() {
                        if !(first && i == 0) {
                            chunk.push(',');
                        }
                        match serde_json::to_string(agent) {
                            Ok(view) => chunk.push_str(&view),
                            Err(e) => return Some((Err(std::io::Error::other(e)), (Part::Done, store))),
                        }
                    }
                    let last = agents.last().map(|a| a.id.clone());
                    Some((
                        Ok(Bytes::from(chunk)),
                        (
                            Part::Page {
                                after: last,
                                first: false,
                            },
                            store,
                        ),
                    ))
                }
                Err(e) => {
                    // The status line is sent: the connection is cut, so the client sees a broken
                    // body rather than a list that looks whole.
                    tracing::warn!(error = %e, "the status's list of agents could not be read to its end");
                    Some((Err(std::io::Error::other(e.to_string())), (Part::Done, store)))
                }
            },
            Part::Done => None,
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}
