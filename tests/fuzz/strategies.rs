//! What the fuzzing sends: valid messages with random field values (each field usually good, so
//! that the others' garbage is what the server meets), and bodies that are anything but a clean
//! message of their type.

use std::fmt;

use bytes::Bytes;
use proptest::collection::{hash_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use prost::Message;
use switchboard::domain::limits::{
    MAX_CAPABILITIES, MAX_COMPLETION_TIME_MS, MAX_CONCURRENCY, MAX_ID_BYTES, MAX_PAYLOAD_BYTES,
    MAX_PRIORITY,
};

use crate::support::pb;
use crate::{Case, Pool, Rpc, MAX_MESSAGE_BYTES, TYPES};

// ---- field values ---------------------------------------------------------------------------

/// Characters the rules care about: controls, whitespace, invisible and bidirectional ones, and
/// what means something to Redis keys and patterns, to JSON or to a log line.
const NASTY_CHARS: &[char] = &[
    '\0',
    '\u{1}',
    '\u{8}',
    '\t',
    '\n',
    '\r',
    '\u{1b}',
    ' ',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{ad}',
    '\u{200b}',
    '\u{200d}',
    '\u{2028}',
    '\u{202a}',
    '\u{202e}',
    '\u{2066}',
    '\u{2069}',
    '\u{feff}',
    '\u{fffd}',
    '\u{fffe}',
    '\u{e000}',
    '\u{10ffff}',
    'é',
    '漢',
    '🦀',
    '"',
    '\'',
    '\\',
    '{',
    '}',
    '[',
    ']',
    '*',
    '?',
    ':',
    '/',
    ',',
    '=',
    '%',
    '$',
];

/// Lengths at and around every limit, and far past them.
const LONG_LENGTHS: &[usize] = &[
    63, 64, 65, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097, 65_536, 300_000,
];

pub const CAPABILITIES: &[&str] = &["rust", "sql", "go", "python", "docs"];

/// A field's value: usually a good one, else garbage (P(all 8 fields good) = 0.8^8, about 17%).
fn mostly<T: fmt::Debug + Clone + 'static>(
    good: impl Strategy<Value = T> + 'static,
    bad: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![4 => good, 1 => bad].boxed()
}

fn nasty_char() -> BoxedStrategy<char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => any::<char>(),
        3 => select(NASTY_CHARS),
        1 => Just('-'),
    ]
    .boxed()
}

/// Any text: empty, short with the characters above, any Unicode, or long.
pub fn text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(String::new()),
        6 => vec(nasty_char(), 1..24).prop_map(String::from_iter),
        2 => any::<String>(),
        1 => (select(LONG_LENGTHS), nasty_char()).prop_map(|(length, last)| {
            let mut long = "x".repeat(length.saturating_sub(1));
            long.push(last);
            long
        }),
    ]
    .boxed()
}

/// Free text the rules accept (tab and line breaks included).
fn good_text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{1,40}",
        "[a-z]{1,8}\n\t[a-zé漢🦀 ]{0,16}",
    ]
    .boxed()
}

/// An id the rules accept: one that exists, one that could, or one with what Redis keys and
/// patterns make something of (`{}` hash tags, `:` separators, `*?[` globs).
fn good_id(known: &[String]) -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(known.to_vec()),
        2 => "fz-(task|spec)-[0-9]{1,2}",
        2 => "[a-z][a-z0-9._:{}*?\\[\\]-]{0,15}",
        1 => "[a-zé漢🦀]{1,8}",
        1 => Just("i".repeat(MAX_ID_BYTES)),
    ]
    .boxed()
}

fn id(known: &[String]) -> BoxedStrategy<String> {
    mostly(good_id(known), text())
}

fn optional_id(known: &[String]) -> BoxedStrategy<String> {
    mostly(
        prop_oneof![1 => Just(String::new()), 3 => good_id(known)],
        text(),
    )
}

/// An incarnation: a live one, empty, or garbage.
fn incarnation(known: &[String], good_empty: bool) -> BoxedStrategy<String> {
    let good = if good_empty {
        Just(String::new()).boxed()
    } else {
        select(known.to_vec()).boxed()
    };
    let bad = prop_oneof![
        1 => Just(String::new()),
        2 => select(known.to_vec()),
        2 => "[0-9a-f]{32}",
        1 => "[0-9a-fA-F]{60,70}",
        2 => text(),
    ];
    mostly(good, bad)
}

fn specialist_type() -> BoxedStrategy<String> {
    mostly(select(TYPES.as_slice()).prop_map(str::to_string), text())
}

/// An optional type filter: empty (every type) or a type.
fn type_filter() -> BoxedStrategy<String> {
    mostly(
        prop_oneof![
            Just(String::new()),
            select(TYPES.as_slice()).prop_map(str::to_string)
        ],
        text(),
    )
}

/// Lists that break the rules: garbage elements, just over the limit, or far too many (each
/// element empty, so each is a violation of its own).
fn bad_list(element: BoxedStrategy<String>) -> BoxedStrategy<Vec<String>> {
    prop_oneof![
        6 => vec(element, 1..5),
        2 => vec("[a-z]{1,3}", MAX_CAPABILITIES - 2..MAX_CAPABILITIES + 6),
        1 => select(&[300usize, 2_000][..]).prop_map(|count| vec![String::new(); count]),
    ]
    .boxed()
}

fn capabilities() -> BoxedStrategy<Vec<String>> {
    mostly(
        vec(
            prop_oneof![
                3 => select(CAPABILITIES).prop_map(str::to_string),
                1 => "[a-z][a-z0-9+#.{}-]{0,10}",
            ],
            0..5,
        ),
        bad_list(text()),
    )
}

fn dependencies(known: &[String]) -> BoxedStrategy<Vec<String>> {
    mostly(vec(good_id(known), 0..3), bad_list(text()))
}

fn labels() -> BoxedStrategy<std::collections::HashMap<String, String>> {
    mostly(
        hash_map("[a-z][a-z0-9./-]{0,10}", good_text(), 0..4),
        prop_oneof![
            6 => hash_map(text(), text(), 1..4),
            1 => hash_map("k[0-9]{1,4}", "[a-z]{0,8}", 60..70),
        ],
    )
}

fn payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        30 => vec(any::<u8>(), 0..64),
        1 => Just(vec![0xa5; MAX_PAYLOAD_BYTES]),
        1 => Just(vec![0x5a; MAX_PAYLOAD_BYTES + 1]),
    ]
    .boxed()
}

/// Numbers at the extremes and at each limit.
pub fn any_u64() -> BoxedStrategy<u64> {
    prop_oneof![
        2 => Just(0u64),
        3 => 1u64..8,
        1 => select(&[
            u64::MAX,
            i64::MAX as u64,
            (i64::MAX as u64) + 1,
            1 << 53,
            MAX_COMPLETION_TIME_MS,
            MAX_COMPLETION_TIME_MS + 1,
        ][..]),
        2 => any::<u64>(),
    ]
    .boxed()
}

fn any_u32() -> BoxedStrategy<u32> {
    prop_oneof![
        2 => 0u32..10,
        1 => select(&[MAX_CONCURRENCY, MAX_CONCURRENCY + 1, 1_000_000, u32::MAX][..]),
        1 => any::<u32>(),
    ]
    .boxed()
}

fn any_i32() -> BoxedStrategy<i32> {
    prop_oneof![
        1 => select(&[-1, MAX_PRIORITY + 1, i32::MIN, i32::MAX][..]),
        1 => any::<i32>(),
    ]
    .boxed()
}

fn any_f64() -> BoxedStrategy<f64> {
    prop_oneof![
        2 => select(&[
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1.0 + f64::EPSILON,
            -f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
        ][..]),
        1 => any::<f64>(),
    ]
    .boxed()
}

/// An enum value: known, or just past the known ones, or any.
fn any_enum(known: i32) -> BoxedStrategy<i32> {
    mostly(
        0..=known,
        prop_oneof![
            select(vec![-1, known + 1, i32::MIN, i32::MAX]),
            any::<i32>()
        ],
    )
}

fn epoch() -> BoxedStrategy<u64> {
    mostly(1u64..5, any_u64())
}

/// (subtask id, specialist id, epoch, incarnation) as Release and ReportCompletion quote them:
/// a holder of the pool's (its epoch sometimes one off, its incarnation sometimes left out), or
/// each field on its own.
fn holding(pool: &Pool) -> BoxedStrategy<(String, String, u64, String)> {
    let independent = (
        id(&pool.subtask_ids),
        id(&pool.specialist_ids),
        epoch(),
        incarnation(&pool.incarnations, false),
    );
    let held = (
        select(pool.holders.clone()),
        prop_oneof![4 => Just(0u64), 1 => Just(1), 1 => Just(u64::MAX)],
        any::<bool>(),
    )
        .prop_map(|(holder, epoch_offset, quote_incarnation)| {
            (
                holder.subtask_id,
                holder.specialist_id,
                holder.epoch.wrapping_add(epoch_offset),
                if quote_incarnation {
                    holder.incarnation
                } else {
                    String::new()
                },
            )
        });
    prop_oneof![1 => held, 2 => independent].boxed()
}

fn page_size() -> BoxedStrategy<u32> {
    mostly(prop_oneof![Just(0u32), 1u32..=1000], any_u32())
}

fn page_token() -> BoxedStrategy<String> {
    mostly(
        prop_oneof![Just(String::new()), good_id(&["fz-spec-0".to_string()])],
        prop_oneof![
            2 => text(),
            1 => "[A-Za-z0-9+/=_-]{1,64}",
            1 => (250..260usize).prop_map(|length| "t".repeat(length)),
        ],
    )
}

/// A valid-looking or garbage `x-caller-id` (visible ASCII: what metadata can carry).
fn caller_id() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        6 => Just(None),
        2 => option::of("[ -~]{0,12}"),
        1 => (MAX_ID_BYTES..MAX_ID_BYTES + 3).prop_map(|length| Some("c".repeat(length))),
    ]
    .boxed()
}

// ---- messages -------------------------------------------------------------------------------

fn encoded<M: Message>(message: M) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// Valid messages of `rpc`'s request type with random field values.
pub fn structured(rpc: &Rpc, pool: &Pool) -> BoxedStrategy<Bytes> {
    let specialists = &pool.specialist_ids;
    let subtasks = &pool.subtask_ids;
    let incarnations = &pool.incarnations;
    match rpc.method {
        "Register" => (
            optional_id(specialists),
            specialist_type(),
            capabilities(),
            mostly(0..=MAX_CONCURRENCY, any_u32()),
            labels(),
            any_enum(5),
            incarnation(incarnations, true),
            mostly(Just(false), Just(true)),
        )
            .prop_map(
                |(
                    specialist_id,
                    specialist_type,
                    capabilities,
                    max_concurrency,
                    labels,
                    availability,
                    incarnation,
                    take_over,
                )| {
                    encoded(pb::RegisterRequest {
                        specialist_id,
                        specialist_type,
                        capabilities,
                        max_concurrency,
                        labels,
                        availability,
                        incarnation,
                        take_over,
                    })
                },
            )
            .boxed(),
        "Heartbeat" => (
            id(specialists),
            any_enum(5),
            incarnation(incarnations, false),
        )
            .prop_map(|(specialist_id, availability, incarnation)| {
                encoded(pb::HeartbeatRequest {
                    specialist_id,
                    availability,
                    incarnation,
                })
            })
            .boxed(),
        "Deregister" => id(specialists)
            .prop_map(|specialist_id| encoded(pb::DeregisterRequest { specialist_id }))
            .boxed(),
        "GetSpecialist" => id(specialists)
            .prop_map(|specialist_id| encoded(pb::GetSpecialistRequest { specialist_id }))
            .boxed(),
        "ListSpecialists" => (type_filter(), page_size(), page_token())
            .prop_map(|(specialist_type, page_size, page_token)| {
                encoded(pb::ListSpecialistsRequest {
                    specialist_type,
                    page_size,
                    page_token,
                })
            })
            .boxed(),
        "Assign" => (
            id(subtasks),
            specialist_type(),
            capabilities(),
            mostly(0..=MAX_PRIORITY, any_i32()),
            optional_id(subtasks),
            dependencies(subtasks),
            payload(),
            any::<bool>(),
            mostly(good_text(), text()),
            option::of(any_u64()),
        )
            .prop_map(
                |(
                    subtask_id,
                    specialist_type,
                    required_capabilities,
                    priority,
                    parent_id,
                    depends_on,
                    payload,
                    require_all_capabilities,
                    description,
                    estimated_duration_ms,
                )| {
                    encoded(pb::AssignRequest {
                        subtask_id,
                        specialist_type,
                        required_capabilities,
                        priority,
                        parent_id,
                        depends_on,
                        payload,
                        require_all_capabilities,
                        description,
                        estimated_duration_ms,
                    })
                },
            )
            .boxed(),
        "GetAssignment" => id(subtasks)
            .prop_map(|subtask_id| encoded(pb::GetAssignmentRequest { subtask_id }))
            .boxed(),
        "Release" => (holding(pool), mostly(good_text(), text()))
            .prop_map(
                |((subtask_id, specialist_id, epoch, incarnation), reason)| {
                    encoded(pb::ReleaseRequest {
                        subtask_id,
                        specialist_id,
                        epoch,
                        reason,
                        incarnation,
                    })
                },
            )
            .boxed(),
        "Cancel" => (id(subtasks), mostly(good_text(), text()))
            .prop_map(|(subtask_id, reason)| encoded(pb::CancelRequest { subtask_id, reason }))
            .boxed(),
        "WatchAssignments" => (id(specialists), incarnation(incarnations, false))
            .prop_map(|(specialist_id, incarnation)| {
                encoded(pb::WatchAssignmentsRequest {
                    specialist_id,
                    incarnation,
                })
            })
            .boxed(),
        "GetQueuePosition" => id(subtasks)
            .prop_map(|subtask_id| encoded(pb::GetQueuePositionRequest { subtask_id }))
            .boxed(),
        "ListQueue" => (specialist_type(), page_size(), page_token())
            .prop_map(|(specialist_type, page_size, page_token)| {
                encoded(pb::ListQueueRequest {
                    specialist_type,
                    page_size,
                    page_token,
                })
            })
            .boxed(),
        "GetQueueStats" => type_filter()
            .prop_map(|specialist_type| encoded(pb::GetQueueStatsRequest { specialist_type }))
            .boxed(),
        "ReportCompletion" => (
            holding(pool),
            any::<bool>(),
            mostly(0..=MAX_COMPLETION_TIME_MS, any_u64()),
            mostly(0.0..=1.0f64, any_f64()),
            mostly(good_text(), text()),
        )
            .prop_map(
                |(
                    (subtask_id, specialist_id, epoch, incarnation),
                    success,
                    completion_time_ms,
                    quality_score,
                    detail,
                )| {
                    encoded(pb::ReportCompletionRequest {
                        subtask_id,
                        specialist_id,
                        epoch,
                        success,
                        completion_time_ms,
                        quality_score,
                        detail,
                        incarnation,
                    })
                },
            )
            .boxed(),
        "GetPerformance" => id(specialists)
            .prop_map(|specialist_id| encoded(pb::GetPerformanceRequest { specialist_id }))
            .boxed(),
        "GetModelStatus" => Just(encoded(pb::GetModelStatusRequest {})).boxed(),
        other => unreachable!("no structured requests for {other}"),
    }
}

// ---- bytes that are not a message -----------------------------------------------------------

/// Field numbers at the edges: the one-byte key's last, the two-byte key's last, the reserved
/// range, the largest valid, past it, and far past it.
const ODD_FIELD_NUMBERS: &[u64] = &[
    15,
    16,
    2047,
    2048,
    19_000,
    19_999,
    (1 << 29) - 1,
    1 << 29,
    1 << 32,
    (1 << 61) - 1,
];

/// Length prefixes no request is that long.
const HUGE_LENGTHS: &[u64] = &[
    1 << 21,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    1 << 62,
    u64::MAX,
];

/// Strings that are not UTF-8: stray continuation and lead bytes, an overlong NUL, a surrogate,
/// past U+10FFFF, a sequence cut short, a five-byte form.
const NOT_UTF8: &[&[u8]] = &[
    b"\xff",
    b"a\xfe",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xe6\xbc",
    b"fz-\x80task-1",
    b"\xf8\x88\x80\x80\x80",
];

fn varint(value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(value, &mut out);
    out
}

fn key(field: u64, wire_type: u64) -> Vec<u8> {
    varint(field.wrapping_shl(3) | wire_type)
}

fn length_delimited(field: u64, content: &[u8]) -> Vec<u8> {
    let mut out = key(field, 2);
    out.extend(varint(content.len() as u64));
    out.extend_from_slice(content);
    out
}

/// One field of any number and wire type (the invalid 6 and 7 too) with a payload that may or
/// may not fit it: varints (and ones that never end), fixed widths, lengths true and huge.
fn raw_field() -> BoxedStrategy<Vec<u8>> {
    let number = prop_oneof![
        6 => 1u64..=12,
        1 => Just(0u64),
        2 => select(ODD_FIELD_NUMBERS),
        1 => any::<u64>(),
    ];
    let wire_type = prop_oneof![5 => 0u64..=5, 1 => 6u64..=7];
    let payload = prop_oneof![
        any::<u64>().prop_map(varint),
        Just(vec![0xff; 10]),
        Just(vec![0x80; 11]),
        vec(any::<u8>(), 4..=4),
        vec(any::<u8>(), 8..=8),
        (select(HUGE_LENGTHS), vec(any::<u8>(), 0..16)).prop_map(|(length, bytes)| {
            let mut out = varint(length);
            out.extend(bytes);
            out
        }),
        vec(any::<u8>(), 0..32).prop_map(|bytes| {
            let mut out = varint(bytes.len() as u64);
            out.extend(bytes);
            out
        }),
        Just(Vec::new()),
    ];
    (number, wire_type, payload)
        .prop_map(|(number, wire_type, payload)| {
            let mut out = key(number, wire_type);
            out.extend(payload);
            out
        })
        .boxed()
}

/// Nested groups (wire types 3 and 4), past prost's recursion limit, closed or not.
fn deep_groups() -> BoxedStrategy<Vec<u8>> {
    (1usize..=400, 1u64..=12, any::<bool>())
        .prop_map(|(depth, field, closed)| {
            let mut out = key(field, 3).repeat(depth);
            if closed {
                out.extend(key(field, 4).repeat(depth));
            }
            out
        })
        .boxed()
}

/// A valid message, then a string field that is not UTF-8 (in a map entry for a map field).
fn not_utf8_field(rpc: &Rpc, valid: BoxedStrategy<Bytes>) -> BoxedStrategy<Bytes> {
    let fields: &'static [u64] = if rpc.string_fields.is_empty() {
        &[1]
    } else {
        rpc.string_fields
    };
    let is_register = rpc.method == "Register";
    (valid, select(fields), select(NOT_UTF8), any::<bool>())
        .prop_map(move |(valid, field, bad, in_key)| {
            let mut out = valid.to_vec();
            if is_register && field == 5 {
                let entry = length_delimited(if in_key { 1 } else { 2 }, bad);
                out.extend(length_delimited(5, &entry));
            } else {
                out.extend(length_delimited(field, bad));
            }
            Bytes::from(out)
        })
        .boxed()
}

/// Bodies for `rpc` that are anything but a clean message of its type: random bytes, valid
/// messages truncated, bit-flipped or with a random field spliced in, strings that are not UTF-8,
/// huge length prefixes, odd field numbers and wire types, deep groups, over the size limit.
pub fn raw_body(rpc: &Rpc, pool: &Pool) -> BoxedStrategy<Bytes> {
    let valid = structured(rpc, pool);
    prop_oneof![
        3 => vec(any::<u8>(), 0..300).prop_map(Bytes::from),
        1 => valid.clone(),
        3 => (valid.clone(), any::<Index>()).prop_map(|(body, at)| {
            let cut = if body.is_empty() { 0 } else { at.index(body.len()) };
            body.slice(..cut)
        }),
        3 => (valid.clone(), vec((any::<Index>(), 1u8..=255), 1..4)).prop_map(|(body, flips)| {
            let mut out = body.to_vec();
            if !out.is_empty() {
                for (at, mask) in flips {
                    let position = at.index(out.len());
                    out[position] ^= mask;
                }
            }
            Bytes::from(out)
        }),
        3 => (valid.clone(), raw_field(), any::<Index>(), any::<bool>()).prop_map(
            |(body, field, at, at_the_end)| {
                let position = if at_the_end || body.is_empty() {
                    body.len()
                } else {
                    at.index(body.len())
                };
                let mut out = body[..position].to_vec();
                out.extend(field);
                out.extend_from_slice(&body[position..]);
                Bytes::from(out)
            }
        ),
        3 => not_utf8_field(rpc, valid),
        3 => vec(raw_field(), 1..12).prop_map(|fields| Bytes::from(fields.concat())),
        1 => deep_groups().prop_map(Bytes::from),
        1 => Just(Bytes::from(vec![0x0a; MAX_MESSAGE_BYTES + 16])),
    ]
    .boxed()
}

/// Cases of `body`, each with an `x-caller-id` or none.
pub fn cases(body: BoxedStrategy<Bytes>) -> BoxedStrategy<Case> {
    (body, caller_id())
        .prop_map(|(body, caller_id)| Case { body, caller_id })
        .boxed()
}
