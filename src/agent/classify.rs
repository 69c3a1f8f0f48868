//! Failure classification from the structured error channels of a failed turn.
//!
//! Owns the rules that turn an HTTP status, an API error type or a CLI's final error
//! record into a `FailureClass`, and the parsing of reset and retry times. Callers must
//! only pass error channels (HTTP status, `error` events, `turn.failed`, result records),
//! never assistant text. Does not decide what to do about a class (the runner does).

use time::{Duration as TimeDuration, OffsetDateTime, Time, UtcOffset};

use crate::agent::event::FailureClass;

/// Classifies an HTTP failure from its status, `retry-after` and the API error type.
pub fn classify_http(
    status: u16,
    retry_after_secs: Option<u64>,
    error_type: Option<&str>,
) -> FailureClass {
    if let Some(class) = error_type.and_then(|ty| classify_error_type(ty, retry_after_secs)) {
        return class;
    }
    match status {
        408 | 409 | 425 | 429 | 500..=599 => FailureClass::Transient { retry_after_secs },
        _ => FailureClass::Terminal,
    }
}

/// Classifies an API error type (`overloaded_error`, `rate_limit_error`,
/// `insufficient_quota`...). `None` when the type says nothing decisive.
pub fn classify_error_type(
    error_type: &str,
    retry_after_secs: Option<u64>,
) -> Option<FailureClass> {
    let ty = error_type.to_ascii_lowercase();
    if ty.contains("quota") || ty.contains("billing") || ty.contains("spend") {
        return Some(FailureClass::Terminal);
    }
    if ty.contains("overloaded")
        || ty.contains("rate_limit")
        || ty == "api_error"
        || ty.contains("timeout")
        || ty.contains("server_error")
        || ty == "resource_exhausted"
        || ty == "unavailable"
    {
        return Some(FailureClass::Transient { retry_after_secs });
    }
    if ty.contains("authentication")
        || ty.contains("permission")
        || ty.contains("invalid_request")
        || ty.contains("not_found")
        || ty.contains("too_large")
        || ty.contains("invalid_api_key")
        || ty == "unauthenticated"
    {
        return Some(FailureClass::Terminal);
    }
    None
}

/// Classifies the message of a Codex `turn.failed` (or its final `error` record).
pub fn classify_codex_error(message: &str, now: OffsetDateTime) -> FailureClass {
    let lower = message.to_ascii_lowercase();
    if lower.contains("usage limit") {
        return FailureClass::UsageLimit {
            resets_in_secs: parse_reset_in_secs(message, now),
        };
    }
    if lower.contains("quota exceeded")
        || lower.contains("upgrade to plus")
        || lower.contains("billing")
    {
        return FailureClass::Terminal;
    }
    // Codex's own words for a 5xx after its retries, and for a stream cut mid-turn:
    // transient whatever status the rest of the message quotes.
    let codex_transient = ["high demand", "stream disconnected", "reconnecting"];
    if codex_transient.iter().any(|needle| lower.contains(needle)) {
        return FailureClass::Transient {
            retry_after_secs: parse_reset_in_secs(message, now),
        };
    }
    if let Some(status) = http_status_in(&lower) {
        return classify_http(status, parse_reset_in_secs(message, now), None);
    }
    let transient = [
        "overloaded",
        "rate limit",
        "timed out",
        "timeout",
        "connection",
        "temporarily unavailable",
        "internal server error",
    ];
    if transient.iter().any(|needle| lower.contains(needle)) {
        return FailureClass::Transient {
            retry_after_secs: parse_reset_in_secs(message, now),
        };
    }
    FailureClass::Terminal
}

/// Finds an HTTP status code the CLI quoted: "status 401", "429 Too Many Requests".
fn http_status_in(lower: &str) -> Option<u16> {
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for (i, word) in words.iter().enumerate() {
        let Ok(code) = word.parse::<u16>() else {
            continue;
        };
        if !(400..=599).contains(&code) {
            continue;
        }
        let after_status = i > 0 && words[i - 1] == "status";
        let reason_follows = words.get(i + 1).is_some_and(|next| {
            [
                "too",
                "unauthorized",
                "forbidden",
                "bad",
                "internal",
                "service",
                "gateway",
                "not",
                "request",
            ]
            .contains(next)
        });
        if after_status || reason_follows {
            return Some(code);
        }
    }
    None
}

/// Seconds until a reset the message names: "try again at 4:05 PM", "try again in
/// 2 hours 5 minutes", "resets_in_seconds": 90, or a `Claude AI usage limit
/// reached|<unix time>` record.
pub fn parse_reset_in_secs(message: &str, now: OffsetDateTime) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    if let Some(pos) = lower.find("resets_in_seconds") {
        let digits: String = lower[pos..]
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(secs) = digits.parse() {
            return Some(secs);
        }
    }
    if let Some((_, tail)) = lower.split_once("limit reached|") {
        let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(epoch) = digits.parse::<i64>() {
            return Some(epoch.saturating_sub(now.unix_timestamp()).max(0) as u64);
        }
    }
    if let Some((_, tail)) = lower.split_once("try again in ") {
        return parse_duration_words(tail);
    }
    if let Some((_, tail)) = lower.split_once("try again at ") {
        return parse_clock_time(tail).map(|at| secs_until(at, now));
    }
    None
}

/// "2 hours 5 minutes", "90 seconds", "3 days" → seconds.
fn parse_duration_words(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut found = false;
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut i = 0;
    while i + 1 < words.len() {
        let Ok(n) = words[i].parse::<u64>() else {
            break;
        };
        let unit = words[i + 1].trim_end_matches(['.', ')']);
        let secs = match unit.trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" | "hr" => 3600,
            "day" => 86_400,
            _ => break,
        };
        total += n * secs;
        found = true;
        i += 2;
        if words.get(i) == Some(&"and") {
            i += 1;
        }
    }
    found.then_some(total)
}

/// Finds the first "H:MM" (optionally followed by AM/PM) in `text`.
fn parse_clock_time(text: &str) -> Option<Time> {
    for (i, _) in text.match_indices(':') {
        let hour_start = text[..i]
            .rfind(|c: char| !c.is_ascii_digit())
            .map_or(0, |p| p + 1);
        let Ok(hour) = text[hour_start..i].parse::<u8>() else {
            continue;
        };
        let minute_str: String = text[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if minute_str.len() != 2 {
            continue;
        }
        let Ok(minute) = minute_str.parse::<u8>() else {
            continue;
        };
        let rest = text[i + 1 + minute_str.len()..].trim_start();
        let hour = if rest.starts_with("pm") && hour < 12 {
            hour + 12
        } else if rest.starts_with("am") && hour == 12 {
            0
        } else {
            hour
        };
        return Time::from_hms(hour, minute, 0).ok();
    }
    None
}

/// Seconds from `now` to the next time the clock shows `at` (in `now`'s offset). The
/// CLIs name the minute only ("4:05 PM"): when that minute is the current one, the reset
/// falls within it, so this waits for the minute's end rather than until tomorrow.
fn secs_until(at: Time, now: OffsetDateTime) -> u64 {
    let mut target = now.replace_time(at);
    let minute = TimeDuration::minutes(1);
    if target <= now && now < target + minute {
        return ((target + minute) - now).whole_seconds().max(0) as u64;
    }
    if target <= now {
        target += TimeDuration::days(1);
    }
    (target - now).whole_seconds().max(0) as u64
}

/// Now, in the machine's local offset: agent CLIs name reset times ("try again at
/// 4:05 PM") on the local clock. Falls back to UTC when the offset is unknown.
pub fn local_now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let seconds = now.unix_timestamp() as nix::libc::time_t;
    let mut tm = std::mem::MaybeUninit::<nix::libc::tm>::zeroed();
    // SAFETY: localtime_r is the reentrant variant; it only writes into `tm`, which is
    // zero-initialised and valid for writes, and we read it only on success.
    let converted = unsafe { nix::libc::localtime_r(&seconds, tm.as_mut_ptr()) };
    if converted.is_null() {
        return now;
    }
    // SAFETY: localtime_r returned non-null, so it filled `tm`.
    let offset = unsafe { tm.assume_init() }.tm_gmtoff;
    i32::try_from(offset)
        .ok()
        .and_then(|secs| UtcOffset::from_whole_seconds(secs).ok())
        .map_or(now, |offset| now.to_offset(offset))
}

/// Parses a `retry-after` header: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Some(secs.ceil().max(0.0) as u64);
    }
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some((at - now).whole_seconds().max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-02 15:00:00 UTC);

    #[test]
    fn codex_usage_limit_parks_until_the_named_clock_time() {
        let msg = "You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 4:05 PM.";
        assert_eq!(
            classify_codex_error(msg, NOW),
            FailureClass::UsageLimit {
                resets_in_secs: Some(65 * 60)
            }
        );
        // The current minute means the end of it, not tomorrow.
        let same_minute = datetime!(2026-03-02 16:05:20 UTC);
        assert_eq!(parse_reset_in_secs(msg, same_minute), Some(40));
        // A time already past today means tomorrow.
        let late = datetime!(2026-03-02 17:00:00 UTC);
        assert_eq!(parse_reset_in_secs(msg, late), Some(23 * 3600 + 5 * 60));
        assert_eq!(
            parse_reset_in_secs("Try again at 12:30 AM", NOW),
            Some(9 * 3600 + 30 * 60)
        );
    }

    #[test]
    fn reset_durations_and_fields_are_understood() {
        assert_eq!(
            parse_reset_in_secs("usage limit, try again in 2 hours 5 minutes.", NOW),
            Some(7500)
        );
        assert_eq!(
            parse_reset_in_secs(r#"{"resets_in_seconds": 90}"#, NOW),
            Some(90)
        );
        let epoch = NOW.unix_timestamp() + 600;
        assert_eq!(
            parse_reset_in_secs(&format!("Claude AI usage limit reached|{epoch}"), NOW),
            Some(600)
        );
        assert_eq!(
            parse_reset_in_secs("You've hit your usage limit.", NOW),
            None
        );
    }

    #[test]
    fn codex_errors_split_into_transient_and_terminal() {
        let transient = FailureClass::Transient {
            retry_after_secs: None,
        };
        assert_eq!(
            classify_codex_error(
                "exceeded retry limit, last status: 429 Too Many Requests",
                NOW
            ),
            transient
        );
        assert_eq!(
            classify_codex_error("stream disconnected before completion: eof", NOW),
            transient
        );
        assert_eq!(
            classify_codex_error(
                "We're currently experiencing high demand, which may cause temporary errors.",
                NOW
            ),
            transient
        );
        assert_eq!(
            classify_codex_error(
                "stream disconnected before completion: error sending request: 400 Bad Request",
                NOW
            ),
            transient
        );
        assert_eq!(
            classify_codex_error("unexpected status 503 Service Unavailable", NOW),
            transient
        );
        assert_eq!(
            classify_codex_error("unexpected status 401 Unauthorized: bad key", NOW),
            FailureClass::Terminal
        );
        assert_eq!(
            classify_codex_error("Quota exceeded. Check your plan and billing details.", NOW),
            FailureClass::Terminal
        );
        assert_eq!(
            classify_codex_error("something odd", NOW),
            FailureClass::Terminal
        );
    }

    #[test]
    fn http_statuses_and_api_error_types() {
        let t = |s| FailureClass::Transient {
            retry_after_secs: s,
        };
        assert_eq!(
            classify_http(429, Some(17), Some("rate_limit_error")),
            t(Some(17))
        );
        assert_eq!(classify_http(529, None, Some("overloaded_error")), t(None));
        assert_eq!(classify_http(503, Some(2), None), t(Some(2)));
        assert_eq!(
            classify_http(401, None, Some("authentication_error")),
            FailureClass::Terminal
        );
        assert_eq!(classify_http(403, None, None), FailureClass::Terminal);
        assert_eq!(
            classify_http(400, None, Some("invalid_request_error")),
            FailureClass::Terminal
        );
        // A 429 that means "out of money" is not worth retrying.
        assert_eq!(
            classify_http(429, Some(5), Some("insufficient_quota")),
            FailureClass::Terminal
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("17", NOW), Some(17));
        assert_eq!(
            parse_retry_after("Mon, 02 Mar 2026 15:00:30 GMT", NOW),
            Some(30)
        );
        assert_eq!(parse_retry_after("soon", NOW), None);
    }
}
