//! Runs one turn against an HTTP streaming API and classifies HTTP failures.
//!
//! Shared by the anthropic, minimax and openai backends. Owns the request/response
//! edge: connection errors and non-2xx statuses become classified failures, a 2xx body
//! is decoded as SSE and parsed as it arrives, a silent or broken stream ends the turn
//! as interrupted. Dropping the future closes the connection.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use time::OffsetDateTime;

use crate::agent::backend::{TurnEvents, TurnResult};
use crate::agent::classify::{classify_http, parse_retry_after};
use crate::agent::event::{AgentEvent, FailureClass, TurnOutcome, Usage};
use crate::agent::stream::turn::{compact, str_at};
use crate::agent::stream::{SseFeed, SseParser};

/// Largest error body read from a failed response.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A classified HTTP failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFailure {
    pub class: FailureClass,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

/// Classifies a non-2xx response from its status, `retry-after` and JSON error body
/// (Anthropic `{"error":{"type","message"}}`, OpenAI `{"error":{"message","type","code"}}`
/// or Ollama `{"error":"…"}`).
pub fn http_failure(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
    now: OffsetDateTime,
) -> HttpFailure {
    let retry_after_secs = retry_after.and_then(|v| parse_retry_after(v, now));
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error = json.as_ref().and_then(|j| j.get("error"));
    let error_type = error.and_then(|e| str_at(e, "type").or_else(|| str_at(e, "code")));
    let detail = match error {
        Some(Value::String(text)) => text.clone(),
        Some(error) => str_at(error, "message").map_or_else(|| compact(error), str::to_string),
        None => String::from_utf8_lossy(&body[..body.len().min(2048)])
            .trim()
            .to_string(),
    };
    let class = classify_http(status, retry_after_secs, error_type);
    let message = match error_type {
        Some(ty) => format!("HTTP {status}: {ty}: {detail}"),
        None if detail.is_empty() => format!("HTTP {status}"),
        None => format!("HTTP {status}: {detail}"),
    };
    HttpFailure {
        class,
        message,
        retry_after_secs,
    }
}

/// Sends `request` and streams its SSE body through `parser`, emitting as it goes.
pub async fn run_http_turn<P: SseParser>(
    request: reqwest::RequestBuilder,
    parser: P,
    max_line: usize,
    idle_timeout: Duration,
    events: &TurnEvents,
) -> TurnResult {
    let mut out = Vec::new();
    let result = stream(request, parser, max_line, idle_timeout, &mut out, events).await;
    out.push(AgentEvent::Finished {
        outcome: result.outcome.clone(),
    });
    for event in out.drain(..) {
        events.emit(event).await;
    }
    result
}

async fn stream<P: SseParser>(
    request: reqwest::RequestBuilder,
    parser: P,
    max_line: usize,
    idle_timeout: Duration,
    out: &mut Vec<AgentEvent>,
    events: &TurnEvents,
) -> TurnResult {
    let response = match tokio::time::timeout(idle_timeout, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            return failed(
                out,
                FailureClass::Transient {
                    retry_after_secs: None,
                },
                network_message(&err),
            );
        }
        Err(_) => {
            let message = format!("no response within {}s", idle_timeout.as_secs());
            return failed(
                out,
                FailureClass::Transient {
                    retry_after_secs: None,
                },
                message,
            );
        }
    };
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(response).await;
        let failure = http_failure(
            status.as_u16(),
            retry_after.as_deref(),
            &body,
            OffsetDateTime::now_utc(),
        );
        if status.as_u16() == 429 {
            out.push(AgentEvent::RateLimit {
                message: failure.message.clone(),
                retry_after_secs: failure.retry_after_secs,
                resets_at: None,
            });
        }
        return failed(out, failure.class, failure.message);
    }
    let mut feed = SseFeed::new(parser, max_line);
    let mut body = response.bytes_stream();
    let mut cut = None;
    loop {
        match tokio::time::timeout(idle_timeout, body.next()).await {
            Ok(Some(Ok(chunk))) => feed.push(&chunk, out),
            Ok(Some(Err(err))) => {
                cut = Some(format!("the stream broke: {}", network_message(&err)));
                break;
            }
            Ok(None) => break,
            Err(_) => {
                cut = Some(format!(
                    "the stream was silent for {}s",
                    idle_timeout.as_secs()
                ));
                break;
            }
        }
        for event in out.drain(..) {
            events.emit(event).await;
        }
    }
    let mut result = feed.finish(out);
    if let (TurnOutcome::Interrupted { message }, Some(cut)) = (&mut result.outcome, cut) {
        *message = format!("{message}: {cut}");
    }
    result
}

fn failed(out: &mut Vec<AgentEvent>, class: FailureClass, message: String) -> TurnResult {
    out.push(AgentEvent::Error {
        message: message.clone(),
    });
    TurnResult {
        thread_id: None,
        response: String::new(),
        usage: Usage::default(),
        outcome: TurnOutcome::Failed { class, message },
    }
}

/// The error and its causes, e.g. "error sending request: connection refused".
fn network_message(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

async fn read_limited(response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_secs(30), stream.next()).await
    {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY);
            break;
        }
    }
    body
}
