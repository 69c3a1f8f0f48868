//! Every fixture in `tests/fixtures/agents/` through its parser, delivered whole and
//! in every small chunk size (so chunk boundaries fall inside UTF-8 characters and
//! between `\r` and `\n`), plus cut streams, CRLF and unknown events.

use orch::agent::stream::{
    AnthropicParser, ClaudeParser, CodexParser, DEFAULT_MAX_LINE, GeminiParser, LineParser,
    OpenAiChatParser, SseParser, parse_lines, parse_sse,
};
use orch::agent::{AgentEvent, FailureClass, ItemStatus, TurnOutcome, TurnResult, Usage};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::support::{fixture, fixture_names};

const NOW: OffsetDateTime = datetime!(2026-03-02 15:00:00 UTC);

/// Parses with every chunk size 1..=64 and whole; all must agree.
fn lines_all_ways<P: LineParser>(
    make: impl Fn() -> P,
    bytes: &[u8],
) -> (Vec<AgentEvent>, TurnResult) {
    let whole = parse_lines(make(), bytes, bytes.len().max(1));
    for size in 1..=64 {
        assert_eq!(parse_lines(make(), bytes, size), whole, "chunk size {size}");
    }
    whole
}

fn sse_all_ways<P: SseParser>(make: impl Fn() -> P, bytes: &[u8]) -> (Vec<AgentEvent>, TurnResult) {
    let whole = parse_sse(make(), bytes, bytes.len().max(1));
    for size in 1..=64 {
        assert_eq!(parse_sse(make(), bytes, size), whole, "chunk size {size}");
    }
    whole
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(bytes)
        .replace('\n', "\r\n")
        .into_bytes()
}

fn codex() -> CodexParser {
    CodexParser::new(Usage::default(), NOW)
}

#[test]
fn every_fixture_file_has_a_parser_test() {
    let covered = [
        "anthropic_errors.txt",
        "anthropic_stream.sse",
        "claude_max_turns.jsonl",
        "claude_partial.jsonl",
        "claude_success.jsonl",
        "codex_success.jsonl",
        "codex_usage_limit.jsonl",
        "gemini_success.jsonl",
        "openai_chat_ollama.sse",
        "openai_chat_tools.sse",
        "openai_chat_vllm_reasoning.sse",
    ];
    for name in fixture_names() {
        assert!(
            covered.contains(&name.as_str()),
            "fixture {name} has no parser test"
        );
    }
}

#[test]
fn codex_success_maps_every_item_type() {
    let (events, result) = lines_all_ways(codex, &fixture("codex_success.jsonl"));
    let kinds: Vec<&str> = events.iter().map(AgentEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "reasoning",
            "tool_call",
            "command",
            "command",
            "tool_call",
            "file_change",
            "command",
            "command",
            "tool_call",
            "tool_call",
            "message",
            "tool_call",
            "usage"
        ]
    );
    assert_eq!(
        events[0],
        AgentEvent::Started {
            thread_id: Some("019a4c2e-58b1-7f03-a6d4-93e2c1b0f7aa".into())
        }
    );
    assert_eq!(
        events[4],
        AgentEvent::Command {
            id: Some("item_2".into()),
            command: "/bin/bash -lc 'cargo test -p calendar week'".into(),
            status: ItemStatus::Failed,
            exit_code: Some(101),
            output: Some("running 5 tests\ntest week_of_new_year ... FAILED\ntest result: FAILED. 4 passed; 1 failed\n".into()),
        }
    );
    assert_eq!(
        events[6],
        AgentEvent::FileChange {
            path: "/home/dev/planner/crates/calendar/src/week.rs".into(),
            change: "update".into(),
            status: ItemStatus::Completed
        }
    );
    assert!(
        matches!(&events[10], AgentEvent::ToolCall { name, result: Some(r), .. }
        if name == "specs.lookup" && r == "week 1 is the week holding the first Thursday of the year")
    );
    assert!(
        matches!(&events[12], AgentEvent::ToolCall { name, arguments, status: ItemStatus::Completed, .. }
        if name == "todo_list" && arguments == "[x] Run the calendar tests; [x] Use ISO weeks in week_of_year")
    );
    let usage = Usage {
        input_tokens: 52740,
        cached_input_tokens: 45056,
        output_tokens: 1342,
        reasoning_output_tokens: 256,
    };
    assert_eq!(events[13], AgentEvent::Usage(usage));
    assert_eq!(result.usage, usage);
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.thread_id.as_deref(),
        Some("019a4c2e-58b1-7f03-a6d4-93e2c1b0f7aa")
    );
    assert!(
        result
            .response
            .starts_with("`week_of_year` now follows ISO 8601")
    );
    // The same stream with CRLF line ends parses identically.
    assert_eq!(
        lines_all_ways(codex, &crlf(&fixture("codex_success.jsonl"))),
        (events, result)
    );
}

#[test]
fn codex_usage_on_a_resumed_thread_is_a_delta() {
    let before = Usage {
        input_tokens: 50000,
        cached_input_tokens: 45000,
        output_tokens: 1300,
        reasoning_output_tokens: 200,
    };
    let (_, result) = parse_lines(
        CodexParser::new(before, NOW),
        &fixture("codex_success.jsonl"),
        4096,
    );
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 2740,
            cached_input_tokens: 56,
            output_tokens: 42,
            reasoning_output_tokens: 56
        }
    );
}

#[test]
fn codex_usage_limit_is_parked_until_the_reset_time() {
    let (events, result) = lines_all_ways(codex, &fixture("codex_usage_limit.jsonl"));
    let TurnOutcome::Failed { class, message } = &result.outcome else {
        panic!("{:?}", result.outcome)
    };
    assert_eq!(
        *class,
        FailureClass::UsageLimit {
            resets_in_secs: Some(140 * 60)
        }
    );
    assert!(message.contains("usage limit"));
    assert!(events.iter().any(|e| matches!(e, AgentEvent::RateLimit { retry_after_secs: Some(8400), resets_at: Some(at), .. } if at == "2026-03-02T17:20:00Z")));
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Error { .. })));
    assert!(result.usage.is_zero());
}

#[test]
fn codex_stream_cut_before_turn_completed_is_interrupted() {
    let bytes = fixture("codex_success.jsonl");
    let text = String::from_utf8(bytes).unwrap();
    let cut = text.rfind("{\"type\":\"turn.completed\"").unwrap();
    // Cut in the middle of the last line too: the partial line is ignored.
    let (events, result) = lines_all_ways(codex, &text.as_bytes()[..cut + 20]);
    assert!(matches!(result.outcome, TurnOutcome::Interrupted { .. }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Message { .. }))
    );
    assert!(result.usage.is_zero());
}

#[test]
fn unknown_events_and_fields_are_skipped() {
    let stream = concat!(
        "{\"type\":\"thread.started\",\"thread_id\":\"t1\",\"brand_new\":1}\n",
        "{\"type\":\"session.teleported\",\"where\":\"mars\"}\n",
        "not json at all\n",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"i\",\"type\":\"hologram\"}}\n",
        "{\"type\":\"item.completed\",\"item\":{\"id\":\"j\",\"type\":\"agent_message\",\"text\":\"ok → done\",\"extra\":[]}}\n",
        "{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"future_tokens\":9}}\n",
    );
    let (events, result) = lines_all_ways(codex, stream.as_bytes());
    assert_eq!(events.len(), 4);
    // A line that is no JSON is kept as the agent's raw text, not dropped.
    assert_eq!(
        events[1],
        AgentEvent::RawLine {
            text: "not json at all".into()
        }
    );
    assert_eq!(result.response, "ok → done");
    assert_eq!(result.outcome, TurnOutcome::Completed);

    let sse = "event: mystery\ndata: {\"type\":\"mystery\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (events, result) = sse_all_ways(AnthropicParser::default, sse.as_bytes());
    assert!(events.is_empty());
    assert_eq!(result.outcome, TurnOutcome::Completed);
}

#[test]
fn claude_success_maps_tools_and_uses_the_result_usage() {
    let (events, result) =
        lines_all_ways(|| ClaudeParser::new(NOW), &fixture("claude_success.jsonl"));
    let kinds: Vec<&str> = events.iter().map(AgentEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "reasoning",
            "message",
            "command",
            "command",
            "file_change",
            "message",
            "usage"
        ]
    );
    assert_eq!(
        events[1],
        AgentEvent::Reasoning {
            text: "Week numbers are off near New Year; run the tests first.".into()
        }
    );
    assert_eq!(
        events[4],
        AgentEvent::Command {
            id: Some("toolu_01Gh2Jk4Lm6Np8Qr0St2Uv4W".into()),
            command: "cargo test -p calendar week".into(),
            status: ItemStatus::Failed,
            exit_code: None,
            output: Some(
                "running 5 tests\ntest week_of_new_year ... FAILED\ntest result: FAILED. 4 passed; 1 failed"
                    .into()
            ),
        }
    );
    assert_eq!(
        events[5],
        AgentEvent::FileChange {
            path: "/home/dev/planner/crates/calendar/src/week.rs".into(),
            change: "update".into(),
            status: ItemStatus::Completed
        }
    );
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 6 + 5590 + 47174,
            cached_input_tokens: 47174,
            output_tokens: 225,
            reasoning_output_tokens: 0
        }
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.thread_id.as_deref(),
        Some("e2a7c915-3d60-4b8f-a1c4-7f95b2d80e36")
    );
    assert_eq!(
        result.response,
        "`week_of_year` now counts ISO weeks; the New Year test passes."
    );
}

#[test]
fn claude_max_turns_is_terminal() {
    let (events, result) = lines_all_ways(
        || ClaudeParser::new(NOW),
        &fixture("claude_max_turns.jsonl"),
    );
    let TurnOutcome::Failed { class, message } = &result.outcome else {
        panic!("{:?}", result.outcome)
    };
    assert_eq!(*class, FailureClass::Terminal);
    assert!(message.contains("error_max_turns") && message.contains("maximum number of turns"));
    assert!(events.iter().any(|e| matches!(e, AgentEvent::ToolCall { name, status: ItemStatus::Completed, .. } if name == "Grep")));
    assert_eq!(result.usage.output_tokens, 52);
}

#[test]
fn claude_partial_messages_show_text_once_and_a_missing_result_is_interrupted() {
    let (events, result) =
        lines_all_ways(|| ClaudeParser::new(NOW), &fixture("claude_partial.jsonl"));
    let messages: Vec<&AgentEvent> = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Message { .. }))
        .collect();
    assert_eq!(
        messages,
        [&AgentEvent::Message {
            text: "Week 1 now holds the first Thursday".into()
        }]
    );
    assert!(matches!(result.outcome, TurnOutcome::Interrupted { .. }));
    assert_eq!(result.response, "Week 1 now holds the first Thursday");
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 21483,
            cached_input_tokens: 21480,
            output_tokens: 9,
            reasoning_output_tokens: 0
        }
    );
}

#[test]
fn gemini_success_joins_deltas_and_maps_tools() {
    let (events, result) = lines_all_ways(GeminiParser::default, &fixture("gemini_success.jsonl"));
    let kinds: Vec<&str> = events.iter().map(AgentEvent::kind).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "message",
            "command",
            "command",
            "file_change",
            "tool_call",
            "tool_call",
            "message",
            "usage"
        ]
    );
    assert_eq!(
        events[4],
        AgentEvent::FileChange {
            path: "/home/dev/planner/crates/calendar/src/week.rs".into(),
            change: "update".into(),
            status: ItemStatus::Completed
        }
    );
    assert_eq!(
        events[6],
        AgentEvent::ToolCall {
            id: Some("google_web_search-1772444473002-3d2c1b".into()),
            name: "google_web_search".into(),
            arguments: "{\"query\":\"ISO week date first Thursday\"}".into(),
            status: ItemStatus::Failed,
            result: Some("web search is disabled in this workspace".into()),
        }
    );
    assert_eq!(
        events[7],
        AgentEvent::Message {
            text: "Weeks now start on the ISO boundary; the week tests pass.".into()
        }
    );
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 26518,
            cached_input_tokens: 20480,
            output_tokens: 1213,
            reasoning_output_tokens: 384
        }
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.thread_id.as_deref(),
        Some("c41d9e70-2a5b-4f83-b6e1-08d7f3a29c54")
    );
}

#[test]
fn anthropic_stream_joins_blocks_and_reports_the_tool_call() {
    let (events, result) = sse_all_ways(AnthropicParser::default, &fixture("anthropic_stream.sse"));
    let expected = vec![
        AgentEvent::Usage(Usage {
            input_tokens: 530,
            cached_input_tokens: 0,
            output_tokens: 1,
            reasoning_output_tokens: 0,
        }),
        AgentEvent::Reasoning {
            text: "I need the failing test's name; grep for it.".into(),
        },
        AgentEvent::Message {
            text: "Searching for the week tests ✓".into(),
        },
        AgentEvent::ToolCall {
            id: Some("toolu_01Lp3Mq5Nr7Os9Pt1Qu3Rv5S".into()),
            name: "grep".into(),
            arguments: "{\"pattern\": \"fn week_\", \"glob\": \"*.rs\"}".into(),
            status: ItemStatus::Completed,
            result: None,
        },
        AgentEvent::Usage(Usage {
            output_tokens: 63,
            ..Usage::default()
        }),
    ];
    assert_eq!(events, expected);
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 530,
            cached_input_tokens: 0,
            output_tokens: 64,
            reasoning_output_tokens: 0
        }
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(result.response, "Searching for the week tests ✓");
    assert_eq!(
        sse_all_ways(
            AnthropicParser::default,
            &crlf(&fixture("anthropic_stream.sse"))
        )
        .1,
        result
    );
}

#[test]
fn anthropic_stream_cut_keeps_partial_text_and_is_interrupted() {
    let text = String::from_utf8(fixture("anthropic_stream.sse")).unwrap();
    let cut = text
        .find("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}")
        .unwrap();
    let (events, result) = sse_all_ways(AnthropicParser::default, &text.as_bytes()[..cut]);
    assert!(matches!(result.outcome, TurnOutcome::Interrupted { .. }));
    assert_eq!(result.response, "Searching for the week tests ✓");
    assert!(events.contains(&AgentEvent::Message {
        text: "Searching for the week tests ✓".into()
    }));
}

#[test]
fn anthropic_errors_mid_stream_and_over_http_are_classified() {
    let text = String::from_utf8(fixture("anthropic_errors.txt")).unwrap();
    let (sse_part, http_part) = text.split_once("# (b)").unwrap();
    let (events, result) = sse_all_ways(AnthropicParser::default, sse_part.as_bytes());
    assert_eq!(
        result.outcome,
        TurnOutcome::Failed {
            class: FailureClass::Transient {
                retry_after_secs: None
            },
            message: "api_error: Internal server error".into()
        }
    );
    assert_eq!(result.usage.input_tokens, 1210);
    // The text streamed before the error is kept.
    assert_eq!(result.response, "Looking at week.rs");
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Error { .. })));

    // (b): the HTTP response as a backend sees it, before any SSE.
    let (head, body) = http_part.split_once("\n\n").unwrap();
    let status: u16 = head.lines().find(|l| l.starts_with("HTTP/1.1")).unwrap()[9..12]
        .parse()
        .unwrap();
    let retry_after = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap();
    let failure = orch::agent::http::http_failure(status, Some(retry_after), body.as_bytes(), NOW);
    assert_eq!(
        failure.class,
        FailureClass::Transient {
            retry_after_secs: Some(42)
        }
    );
    assert!(failure.message.contains("429") && failure.message.contains("rate_limit_error"));
}

#[test]
fn openai_chat_ollama_joins_content_and_reads_usage() {
    let (events, result) = sse_all_ways(
        OpenAiChatParser::default,
        &fixture("openai_chat_ollama.sse"),
    );
    assert_eq!(
        events,
        vec![
            AgentEvent::Message {
                text: "Week 1 holds the first Thursday.".into()
            },
            AgentEvent::Usage(Usage {
                input_tokens: 74,
                output_tokens: 12,
                ..Usage::default()
            }),
        ]
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(result.response, "Week 1 holds the first Thursday.");
}

#[test]
fn openai_chat_tool_call_fragments_are_joined() {
    let (events, result) =
        sse_all_ways(OpenAiChatParser::default, &fixture("openai_chat_tools.sse"));
    // Two calls whose fragments interleave are joined by index, in order.
    assert_eq!(
        events,
        vec![
            AgentEvent::ToolCall {
                id: Some("call_Wk07".into()),
                name: "read_file".into(),
                arguments: "{\"path\":\"src/week.rs\"}".into(),
                status: ItemStatus::Completed,
                result: None,
            },
            AgentEvent::ToolCall {
                id: Some("call_Wk08".into()),
                name: "run_command".into(),
                arguments: "{\"cmd\":\"cargo test -p calendar\"}".into(),
                status: ItemStatus::Completed,
                result: None,
            },
        ]
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert!(result.usage.is_zero());
}

#[test]
fn openai_chat_vllm_reasoning_is_separate_from_the_answer() {
    let (events, result) = sse_all_ways(
        OpenAiChatParser::default,
        &fixture("openai_chat_vllm_reasoning.sse"),
    );
    assert!(events.contains(&AgentEvent::Reasoning {
        text: "Asked for a count; 2026 has 53 ISO weeks? No, 52.".into()
    }));
    assert_eq!(result.response, "52 weeks.");
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 33,
            output_tokens: 48,
            reasoning_output_tokens: 31,
            ..Usage::default()
        }
    );
}

#[test]
fn openai_chat_cut_before_finish_is_interrupted() {
    let text = String::from_utf8(fixture("openai_chat_ollama.sse")).unwrap();
    let cut = text.find("\"finish_reason\":\"stop\"").unwrap();
    let (_, result) = sse_all_ways(OpenAiChatParser::default, &text.as_bytes()[..cut]);
    assert!(matches!(result.outcome, TurnOutcome::Interrupted { .. }));
    assert_eq!(result.response, "Week 1 holds the first Thursday.");
}

/// What a CLI prints on stdout besides its events (warnings, a banner) reaches the log
/// and the store as raw lines, long ones cut; blank lines are skipped.
#[test]
fn non_json_lines_of_every_cli_are_kept_as_bounded_raw_lines() {
    let long = "w".repeat(10_000);
    for (name, bytes) in [
        ("codex", fixture("codex_success.jsonl")),
        ("claude", fixture("claude_success.jsonl")),
        ("gemini", fixture("gemini_success.jsonl")),
    ] {
        let mut noisy = b"WARNING: proxy settings ignored\n\n".to_vec();
        noisy.extend_from_slice(&bytes);
        noisy.extend_from_slice(format!("{long}\n").as_bytes());
        let (events, result) = match name {
            "codex" => parse_lines(codex(), &noisy, 4096),
            "claude" => parse_lines(ClaudeParser::new(NOW), &noisy, 4096),
            _ => parse_lines(GeminiParser::default(), &noisy, 4096),
        };
        let raw: Vec<&String> = events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::RawLine { text } => Some(text),
                _ => None,
            })
            .collect();
        assert_eq!(raw.len(), 2, "{name}: {raw:?}");
        assert_eq!(raw[0], "WARNING: proxy settings ignored", "{name}");
        assert!(raw[1].len() < 4200, "{name}: {} bytes kept", raw[1].len());
        assert!(raw[1].ends_with("[cut: 10000 bytes in all]"), "{name}");
        assert_eq!(result.outcome, TurnOutcome::Completed, "{name}");
    }
}

/// A line over the limit (a runaway tool output in one JSON record) is cut to a short
/// raw line with a marker, and the events after it still count.
#[test]
fn a_line_over_the_limit_is_cut_and_the_stream_goes_on() {
    let mut stream =
        br#"{"type":"item.completed","item":{"id":"big","type":"agent_message","text":""#.to_vec();
    stream.resize(stream.len() + DEFAULT_MAX_LINE + 10, b'z');
    stream.extend_from_slice(b"\"}}\n");
    stream.extend_from_slice(
        br#"{"type":"turn.completed","usage":{"input_tokens":7,"output_tokens":3}}"#,
    );
    let total = stream.len() - stream.iter().rposition(|b| *b == b'\n').unwrap();
    let (events, result) = parse_lines(codex(), &stream, 32 * 1024);
    let AgentEvent::RawLine { text } = &events[0] else {
        panic!("{:?}", events[0].kind())
    };
    assert!(text.starts_with(r#"{"type":"item.completed""#));
    assert!(text.len() < 8 * 1024, "{} bytes kept", text.len());
    assert!(
        text.ends_with(&format!(
            "[cut: a {}-byte line, longer than the line limit]",
            stream.len() - total
        )),
        "{}",
        &text[text.len() - 80..]
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(result.usage.output_tokens, 3);
}
