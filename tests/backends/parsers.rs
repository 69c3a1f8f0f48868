//! Every fixture in `../shared/fixtures/agents/` through its parser, delivered whole and
//! in every small chunk size (so chunk boundaries fall inside UTF-8 characters and
//! between `\r` and `\n`), plus cut streams, CRLF and unknown events.

use orch::agent::stream::{
    AnthropicParser, ClaudeParser, CodexParser, GeminiParser, LineParser, OpenAiChatParser,
    SseParser, parse_lines, parse_sse,
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
            thread_id: Some("0199f3c1-7a2e-7d40-9b1c-5e8a2f6d0c11".into())
        }
    );
    assert_eq!(
        events[4],
        AgentEvent::Command {
            id: Some("item_2".into()),
            command: "/bin/bash -lc 'cargo test -p parser'".into(),
            status: ItemStatus::Failed,
            exit_code: Some(101),
            output: Some("running 3 tests\ntest split_tokens_trailing ... FAILED\ntest result: FAILED. 2 passed; 1 failed\n".into()),
        }
    );
    assert_eq!(
        events[6],
        AgentEvent::FileChange {
            path: "/work/repo/crates/parser/src/lib.rs".into(),
            change: "update".into(),
            status: ItemStatus::Completed
        }
    );
    assert!(
        matches!(&events[10], AgentEvent::ToolCall { name, result: Some(r), .. }
        if name == "docs.search" && r == "split_tokens must drop a trailing empty token")
    );
    assert!(
        matches!(&events[12], AgentEvent::ToolCall { name, arguments, status: ItemStatus::Completed, .. }
        if name == "todo_list" && arguments == "[x] Reproduce the failing test; [x] Fix off-by-one in split_tokens")
    );
    let usage = Usage {
        input_tokens: 48213,
        cached_input_tokens: 40960,
        output_tokens: 1187,
        reasoning_output_tokens: 0,
    };
    assert_eq!(events[13], AgentEvent::Usage(usage));
    assert_eq!(result.usage, usage);
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.thread_id.as_deref(),
        Some("0199f3c1-7a2e-7d40-9b1c-5e8a2f6d0c11")
    );
    assert!(
        result
            .response
            .starts_with("Fixed the off-by-one in `split_tokens`")
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
        input_tokens: 40000,
        cached_input_tokens: 40000,
        output_tokens: 1000,
        reasoning_output_tokens: 0,
    };
    let (_, result) = parse_lines(
        CodexParser::new(before, NOW),
        &fixture("codex_success.jsonl"),
        4096,
    );
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 8213,
            cached_input_tokens: 960,
            output_tokens: 187,
            reasoning_output_tokens: 0
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
            resets_in_secs: Some(65 * 60)
        }
    );
    assert!(message.contains("usage limit"));
    assert!(events.iter().any(|e| matches!(e, AgentEvent::RateLimit { retry_after_secs: Some(3900), resets_at: Some(at), .. } if at == "2026-03-02T16:05:00Z")));
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
    assert_eq!(events.len(), 3);
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
            "message",
            "command",
            "command",
            "file_change",
            "message",
            "usage"
        ]
    );
    assert!(
        matches!(&events[3], AgentEvent::Command { status: ItemStatus::Failed, output: Some(o), command, .. }
        if o.contains("1 failed") && command == "cargo test -p parser")
    );
    assert_eq!(
        events[4],
        AgentEvent::FileChange {
            path: "/work/repo/crates/parser/src/lib.rs".into(),
            change: "update".into(),
            status: ItemStatus::Completed
        }
    );
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 8 + 6710 + 48170,
            cached_input_tokens: 48170,
            output_tokens: 275,
            reasoning_output_tokens: 0
        }
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.thread_id.as_deref(),
        Some("5b0c2e1a-8f3d-4c6b-9a71-2d4e6f8a0b13")
    );
    assert_eq!(
        result.response,
        "Fixed the off-by-one loop bound in `split_tokens`; the trailing-separator test now passes."
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
    assert!(events.iter().any(|e| matches!(e, AgentEvent::ToolCall { name, status: ItemStatus::Completed, .. } if name == "Read")));
    assert_eq!(result.usage.output_tokens, 40);
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
            text: "Fixed the off-by-one".into()
        }]
    );
    assert!(matches!(result.outcome, TurnOutcome::Interrupted { .. }));
    assert_eq!(result.response, "Fixed the off-by-one");
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 17964,
            cached_input_tokens: 17960,
            output_tokens: 6,
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
            "message",
            "usage"
        ]
    );
    assert_eq!(
        events[5],
        AgentEvent::Message {
            text: "Fixed the loop bound; all parser tests pass now.".into()
        }
    );
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 30912,
            cached_input_tokens: 18240,
            output_tokens: 965,
            reasoning_output_tokens: 0
        }
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(
        result.thread_id.as_deref(),
        Some("7e3f1a2b-4c5d-4e6f-8a9b-0c1d2e3f4a5b")
    );
}

#[test]
fn anthropic_stream_joins_blocks_and_reports_the_tool_call() {
    let (events, result) = sse_all_ways(AnthropicParser::default, &fixture("anthropic_stream.sse"));
    let expected = vec![
        AgentEvent::Usage(Usage {
            input_tokens: 412,
            cached_input_tokens: 0,
            output_tokens: 1,
            reasoning_output_tokens: 0,
        }),
        AgentEvent::Reasoning {
            text: "The user wants the file list; I should call list_dir.".into(),
        },
        AgentEvent::Message {
            text: "Let me list the directory.".into(),
        },
        AgentEvent::ToolCall {
            id: Some("toolu_01Vb8Nm2Qw4Er6Ty8Ui0Op2A".into()),
            name: "list_dir".into(),
            arguments: "{\"path\": \"src/\", \"depth\": 1}".into(),
            status: ItemStatus::Completed,
            result: None,
        },
        AgentEvent::Usage(Usage {
            output_tokens: 86,
            ..Usage::default()
        }),
    ];
    assert_eq!(events, expected);
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 412,
            cached_input_tokens: 0,
            output_tokens: 87,
            reasoning_output_tokens: 0
        }
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(result.response, "Let me list the directory.");
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
    assert_eq!(result.response, "Let me list the directory.");
    assert!(events.contains(&AgentEvent::Message {
        text: "Let me list the directory.".into()
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
            message: "overloaded_error: Overloaded".into()
        }
    );
    assert_eq!(result.usage.input_tokens, 950);
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
            retry_after_secs: Some(17)
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
                text: "The bug is an inclusive range.".into()
            },
            AgentEvent::Usage(Usage {
                input_tokens: 58,
                output_tokens: 9,
                ..Usage::default()
            }),
        ]
    );
    assert_eq!(result.outcome, TurnOutcome::Completed);
    assert_eq!(result.response, "The bug is an inclusive range.");
}

#[test]
fn openai_chat_tool_call_fragments_are_joined() {
    let (events, result) =
        sse_all_ways(OpenAiChatParser::default, &fixture("openai_chat_tools.sse"));
    assert!(events.contains(&AgentEvent::ToolCall {
        id: Some("call_Xy12".into()),
        name: "run_command".into(),
        arguments: "{\"cmd\":\"cargo test\"}".into(),
        status: ItemStatus::Completed,
        result: None,
    }));
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
        text: "User wants a one-word answer.".into()
    }));
    assert_eq!(result.response, "Yes.");
    assert_eq!(
        result.usage,
        Usage {
            input_tokens: 21,
            output_tokens: 19,
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
    assert_eq!(result.response, "The bug is an inclusive range.");
}
