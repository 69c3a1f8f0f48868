//! A scripted model server on 127.0.0.1 for backend tests.
//!
//! Speaks just enough HTTP/1.1 (one request per connection, `connection: close`) and
//! three streaming APIs: OpenAI Responses (`POST /v1/responses`, what the Codex CLI
//! uses), Anthropic Messages (`POST /v1/messages`) and OpenAI chat completions
//! (`POST /v1/chat/completions`). A script decides each reply from the request; every
//! request and the usage sent are recorded. Dropping the server stops it and every
//! connection it holds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use orch::agent::Usage;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A request as the script sees it.
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The conversation items: Responses `input`, or Messages/chat `messages`.
    fn items(&self) -> &[Value] {
        self.body
            .get("input")
            .or_else(|| self.body.get("messages"))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Text of the last user message (any of the three APIs).
    pub fn last_user_text(&self) -> String {
        self.items()
            .iter()
            .rev()
            .find(|item| item.get("role").and_then(Value::as_str) == Some("user"))
            .map(content_text)
            .unwrap_or_default()
    }

    /// How many user messages the conversation holds (turn number for HTTP backends).
    pub fn user_messages(&self) -> usize {
        self.items()
            .iter()
            .filter(|item| item.get("role").and_then(Value::as_str) == Some("user"))
            .count()
    }

    /// Responses API: tool outputs sent back since the last user message.
    pub fn tool_outputs_since_user(&self) -> usize {
        let items = self.items();
        let start = items
            .iter()
            .rposition(|item| item.get("role").and_then(Value::as_str) == Some("user"))
            .map_or(0, |p| p + 1);
        items[start..]
            .iter()
            .filter(|item| item.get("type").and_then(Value::as_str) == Some("function_call_output"))
            .count()
    }

    /// Names of the function tools offered (Responses API).
    pub fn tool_names(&self) -> Vec<String> {
        let tools = self.body.get("tools").and_then(Value::as_array);
        tools
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    }
}

fn content_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// What the server sends back.
pub enum Reply {
    /// 200 with an SSE body; `usage` is what the body reports, for the books.
    Sse { body: String, usage: Usage },
    /// Any status with a JSON body and extra headers.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// No answer at all: the connection stays open (a model still thinking) until the
    /// client goes away, or two minutes pass. Recorded with status 0.
    Hang,
}

/// One recorded exchange.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub status: u16,
    pub usage: Usage,
}

impl Recorded {
    /// The request again, as the script saw it.
    pub fn request(&self) -> Request {
        Request {
            path: self.path.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }
}

type Script = dyn Fn(&Request) -> Reply + Send + Sync;

pub struct ModelServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModelServer {
    pub async fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            // Owning the connections here means aborting this task drops them all.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(serve(stream, script.clone(), task_log.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        ModelServer { addr, task, log }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    /// Sum of the usage every reply so far reported.
    pub fn usage_sent(&self) -> Usage {
        let mut total = Usage::default();
        for recorded in self.log.lock().unwrap().iter() {
            total.add(&recorded.usage);
        }
        total
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Script>, log: Arc<Mutex<Vec<Recorded>>>) {
    let Some((path, headers, body)) = read_request(&mut stream).await else {
        return;
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = Request {
        path,
        headers,
        body,
    };
    let reply = script(&request);
    if matches!(reply, Reply::Hang) {
        log.lock().unwrap().push(Recorded {
            path: request.path,
            headers: request.headers,
            body: request.body,
            status: 0,
            usage: Usage::default(),
        });
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        return;
    }
    let (status, extra, content_type, payload, usage) = match reply {
        Reply::Sse { body, usage } => (200, Vec::new(), "text/event-stream", body, usage),
        Reply::Status {
            status,
            headers,
            body,
        } => (status, headers, "application/json", body, Usage::default()),
        Reply::Hang => unreachable!("answered above"),
    };
    log.lock().unwrap().push(Recorded {
        path: request.path,
        headers: request.headers,
        body: request.body,
        status,
        usage,
    });
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\nconnection: close\r\ncontent-length: {}\r\n",
        reason(status),
        payload.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    // Odd-sized writes so clients see chunk boundaries in awkward places.
    for chunk in payload.as_bytes().chunks(333) {
        if stream.write_all(chunk).await.is_err() {
            return;
        }
        let _ = stream.flush().await;
    }
    let _ = stream.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(length);
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = read_chunked(stream, body).await?;
    }
    Some((path, headers, body))
}

async fn read_chunked(stream: &mut TcpStream, mut raw: Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    let mut body = Vec::new();
    loop {
        while let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&raw[..pos]).trim(), 16).ok()?;
            if size == 0 {
                return Some(body);
            }
            if raw.len() < pos + 2 + size + 2 {
                break;
            }
            body.extend_from_slice(&raw[pos + 2..pos + 2 + size]);
            raw.drain(..pos + 2 + size + 2);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(event) => format!("event: {event}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

fn responses_usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_output_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    })
}

fn responses_stream(id: &str, item: Value, text_delta: Option<&str>, usage: Usage) -> Reply {
    let mut body = sse(
        Some("response.created"),
        &json!({"type": "response.created", "response": {"id": id}}),
    );
    let mut added = item.clone();
    if added.get("content").is_some() {
        added["content"] = json!([]);
    }
    body += &sse(
        Some("response.output_item.added"),
        &json!({"type": "response.output_item.added", "output_index": 0, "item": added}),
    );
    if let Some(delta) = text_delta {
        let item_id = item.get("id").cloned().unwrap_or(Value::Null);
        body += &sse(
            Some("response.output_text.delta"),
            &json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}),
        );
    }
    body += &sse(
        Some("response.output_item.done"),
        &json!({"type": "response.output_item.done", "output_index": 0, "item": item}),
    );
    body += &sse(
        Some("response.completed"),
        &json!({"type": "response.completed", "response": {"id": id, "usage": responses_usage(&usage)}}),
    );
    Reply::Sse { body, usage }
}

/// Responses API: an assistant message.
pub fn responses_text(id: &str, text: &str, usage: Usage) -> Reply {
    let item = json!({"type": "message", "id": format!("msg_{id}"), "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]});
    responses_stream(id, item, Some(text), usage)
}

/// Responses API: a function call the client should run.
pub fn responses_call(id: &str, name: &str, arguments: &Value, usage: Usage) -> Reply {
    let item = json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": format!("call_{id}"),
        "name": name, "arguments": arguments.to_string()});
    responses_stream(id, item, None, usage)
}

/// Anthropic Messages: one text block in two deltas.
pub fn anthropic_text(text: &str, usage: Usage) -> Reply {
    let fresh = usage.input_tokens - usage.cached_input_tokens;
    let (a, b) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i),
    );
    let mut body = sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {"id": "msg_test", "type": "message", "role": "assistant",
            "content": [], "model": "scripted", "usage": {"input_tokens": fresh, "cache_read_input_tokens": usage.cached_input_tokens,
            "cache_creation_input_tokens": 0, "output_tokens": 1}}}),
    );
    body += &sse(Some("ping"), &json!({"type": "ping"}));
    body += &sse(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for part in [a, b] {
        body += &sse(
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}}),
        );
    }
    body += &sse(
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 0}),
    );
    body += &sse(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": usage.output_tokens}}),
    );
    body += &sse(Some("message_stop"), &json!({"type": "message_stop"}));
    Reply::Sse { body, usage }
}

/// Anthropic Messages: one `tool_use` block (its input in one JSON delta), stop reason
/// `tool_use`: the client runs the tool and sends its result back.
pub fn anthropic_tool_use(id: &str, name: &str, input: &Value) -> Reply {
    let mut body = sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {"id": format!("msg_{id}"), "type": "message", "role": "assistant",
            "content": [], "model": "scripted", "usage": {"input_tokens": 20, "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0, "output_tokens": 1}}}),
    );
    body += &sse(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use",
            "id": format!("toolu_{id}"), "name": name, "input": {}}}),
    );
    body += &sse(
        Some("content_block_delta"),
        &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta",
            "partial_json": input.to_string()}}),
    );
    body += &sse(
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 0}),
    );
    body += &sse(
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
    );
    body += &sse(Some("message_stop"), &json!({"type": "message_stop"}));
    Reply::Sse {
        body,
        usage: Usage::default(),
    }
}

/// Anthropic Messages: the stream opens, then an `overloaded_error` event.
pub fn anthropic_overloaded_mid_stream() -> Reply {
    let mut body = sse(
        Some("message_start"),
        &json!({"type": "message_start", "message": {"id": "msg_err", "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    );
    body += &sse(
        Some("error"),
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    Reply::Sse {
        body,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 1,
            ..Usage::default()
        },
    }
}

/// OpenAI chat completions: content in two chunks, finish, usage chunk, `[DONE]`.
pub fn chat_text(text: &str, usage: Usage) -> Reply {
    let (a, b) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i),
    );
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": "scripted",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut body = sse(
        None,
        &chunk(json!({"role": "assistant", "content": a}), Value::Null),
    );
    body += &sse(None, &chunk(json!({"content": b}), Value::Null));
    body += &sse(None, &chunk(json!({}), json!("stop")));
    body += &sse(
        None,
        &json!({"id": "chatcmpl-test", "object": "chat.completion.chunk", "choices": [], "usage": {
            "prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens}}}),
    );
    body += "data: [DONE]\n\n";
    Reply::Sse { body, usage }
}

/// A JSON error response.
pub fn status(status: u16, retry_after: Option<u64>, error_type: &str, message: &str) -> Reply {
    let headers = retry_after
        .map(|secs| vec![("retry-after".to_string(), secs.to_string())])
        .unwrap_or_default();
    let body =
        json!({"type": "error", "error": {"type": error_type, "message": message}}).to_string();
    Reply::Status {
        status,
        headers,
        body,
    }
}
