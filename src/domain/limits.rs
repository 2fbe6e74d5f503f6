//! Size limits on what callers send, shared by the API's validation and documentation.

/// Longest id (subtask, specialist, parent, dependency), in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest incarnation accepted (the server issues 24 hex digits).
pub const MAX_INCARNATION_BYTES: usize = 64;
/// Most capabilities on a specialist or a subtask.
pub const MAX_CAPABILITIES: usize = 64;
/// Longest capability name, in bytes.
pub const MAX_CAPABILITY_BYTES: usize = 64;
/// Largest subtask payload, in bytes (1 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Most dependencies of one subtask.
pub const MAX_DEPENDENCIES: usize = 64;
/// Priorities run from 0 to this (higher is served first).
pub const MAX_PRIORITY: i32 = 1000;
/// Largest max_concurrency a specialist may ask for.
pub const MAX_CONCURRENCY: u32 = 1000;
/// Most labels on a specialist.
pub const MAX_LABELS: usize = 64;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 64;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Longest free-text reason or detail, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Page size when the caller asks for none.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Longest completion time a report may state, in milliseconds (30 days).
pub const MAX_COMPLETION_TIME_MS: u64 = 30 * 24 * 3600 * 1000;

/// Characters that change how text looks without being seen: zero-width characters, joiners,
/// bidirectional overrides and isolates, the soft hyphen, the byte-order mark. Two ids that differ
/// only by these would look the same.
fn is_invisible(character: char) -> bool {
    matches!(
        character,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// True when every character is visible: no control characters, no whitespace, nothing invisible.
pub fn is_printable_token(text: &str) -> bool {
    text.chars().all(|character| {
        !character.is_control() && !character.is_whitespace() && !is_invisible(character)
    })
}

/// Free text (label values, reasons, details): no control characters but tab, line feed and
/// carriage return (NUL and the others have no business in a log line or a database row), and no
/// bidirectional overrides (they make text read differently from what it holds).
pub fn is_free_text(text: &str) -> bool {
    text.chars().all(|character| {
        (!character.is_control() || matches!(character, '\t' | '\n' | '\r'))
            && !matches!(character, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_refuse_what_cannot_be_seen() {
        assert!(is_printable_token("fe-1"));
        assert!(is_printable_token("é-ü"));
        for bad in [
            "a b",
            "a\u{0}b",
            "a\u{200B}b",
            "a\u{202E}b",
            "\u{FEFF}a",
            "a\u{2066}",
        ] {
            assert!(!is_printable_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn free_text_allows_layout_but_not_controls() {
        assert!(is_free_text("line one\nline two\twith a tab"));
        for bad in [
            "nul\u{0}",
            "bell\u{7}",
            "escape\u{1b}[31m",
            "rlo\u{202E}txt",
        ] {
            assert!(!is_free_text(bad), "{bad:?}");
        }
    }
}
