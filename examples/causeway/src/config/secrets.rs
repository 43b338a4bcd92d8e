//! Secrets in the configuration: what an error may show of the file (where,
//! never the text: a password may sit there), placeholders the example files
//! carry (refused, so an unedited example never runs), secrets too short to
//! resist guessing, and files others than their owner may read (warned about).

use std::path::Path;

use super::{ConfigError, field};

/// The 1-based line and column of byte `at` of `text`.
pub(crate) fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// `message` with every double-quoted value left out: a parser's message may
/// quote what it found (`invalid type: string "hunter2"`).
pub(crate) fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        match (c, inside) {
            ('"', false) => {
                inside = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                inside = false;
                out.push('"');
            }
            (_, true) => {}
            ('\n', false) => out.push(' '),
            (c, false) => out.push(c),
        }
    }
    out.trim().to_string()
}

/// What marks a value the example files want replaced.
const PLACEHOLDER: &str = "REPLACE";

/// Refuses `value` of config key `key` when it is still a placeholder.
pub(crate) fn not_placeholder(key: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.contains(PLACEHOLDER) {
        return Err(field(
            key,
            "still the example's placeholder: put a generated value there (openssl rand -base64 24)",
        ));
    }
    Ok(())
}

/// Shortest shared secret not warned about.
pub(crate) const SECRET_MIN: usize = 16;

/// Warns when `path` (a secret's file, named by config key `key`) may be read
/// by other users than its owner.
pub(crate) fn readable_by_others(path: &Path, key: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| {
        format!(
            "`{key}`: {} can be read by every user of this host (chmod o-r it)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_says_where_and_never_what() {
        let text = "listen = []\nuser = 17\n";
        assert_eq!(line_and_column(text, 19), (2, 8));
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(
            redact("invalid type: string \"hunter2\", expected a sequence"),
            "invalid type: string \"…\", expected a sequence"
        );
        assert_eq!(
            redact("unknown field `log_levle`"),
            "unknown field `log_levle`"
        );
    }

    #[test]
    fn placeholders_are_refused_by_key() {
        let e = not_placeholder("user", "REPLACE-WITH-A-GENERATED-PASSWORD").unwrap_err();
        assert!(e.to_string().starts_with("`user`"), "{e}");
        assert!(!e.to_string().contains("REPLACE-WITH"), "{e}");
        assert!(not_placeholder("user", "4f0c-generated").is_ok());
    }
}
