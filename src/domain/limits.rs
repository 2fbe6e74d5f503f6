//! Size limits on what callers send, shared by the API's validation and documentation.

/// Longest id (subtask, specialist, parent, dependency), in bytes.
pub const MAX_ID_BYTES: usize = 128;
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

/// True when every character is visible: no control characters, no whitespace.
pub fn is_printable_token(text: &str) -> bool {
    text.chars()
        .all(|character| !character.is_control() && !character.is_whitespace())
}
