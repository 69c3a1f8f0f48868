//! POSIX `sh` quoting, for the few places tmux insists on a shell-command string.
//!
//! Owns one rule: every argument that is not made only of known-safe characters is put in
//! single quotes, with each `'` written as `'\''`. Inside single quotes `sh` interprets
//! nothing (`$`, backticks, `\`, newlines are literal), so the quoted word is the
//! argument, byte for byte. Does not handle NUL (no argv can hold one).

/// Quotes one argument for `sh`.
pub fn shell_quote(arg: &str) -> String {
    let is_safe = |b: u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b);
    if !arg.is_empty() && arg.bytes().all(is_safe) {
        return arg.to_owned();
    }
    let mut quoted = String::with_capacity(arg.len() + 2);
    quoted.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// Quotes an argv into one `sh` command line.
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|arg| shell_quote(arg.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    pub(crate) const HOSTILE: &[&str] = &[
        "",
        " ",
        "plain",
        "with space",
        "it's",
        "'",
        "''",
        "\"double\"",
        "$(touch /tmp/orch-pwned)",
        "`id`",
        "$HOME",
        "${IFS}",
        "back\\slash\\",
        "new\nline",
        "tab\there",
        "semi;colon && echo no | cat",
        "#{session_name} #(id) ##",
        "*?[glob]",
        "~",
        "-n",
        "é ✓ 日本",
        "trailing newline\n",
        "!history",
    ];

    #[test]
    fn safe_words_stay_bare() {
        assert_eq!(
            shell_quote("/repo/.orch/runs/a-1.log"),
            "/repo/.orch/runs/a-1.log"
        );
        assert_eq!(shell_quote("+1"), "+1");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    /// The real test: `sh` must hand every argument back unchanged.
    #[test]
    fn sh_reads_back_every_hostile_argument() {
        let line = format!("printf '%s\\0' {}", shell_join(HOSTILE));
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}");
        let text = String::from_utf8(out.stdout).unwrap();
        let got: Vec<&str> = text.split('\0').collect();
        assert_eq!(&got[..got.len() - 1], HOSTILE);
    }
}
