//! The subtask as submitted, as the production store keeps it: opaque bytes the Lua never parses
//! (compared whole for idempotent Assign, handed back whole in replies and events). Canonical:
//! equal specs (their lists sorted by validation) give equal bytes. Layout, version 1: a version
//! byte, then id, type, each capability, priority, parent, each dependency, the require-all flag
//! and the payload; strings and lists carry a u32 little-endian length (count) first, the
//! payload comes last and runs to the end.

use crate::domain::subtask::SubtaskSpec;
use crate::store::{StoreError, StoreResult};

const VERSION: u8 = 1;

pub fn encode_spec(spec: &SubtaskSpec) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64 + spec.payload.len());
    bytes.push(VERSION);
    put_text(&mut bytes, &spec.subtask_id);
    put_text(&mut bytes, &spec.specialist_type);
    put_list(&mut bytes, &spec.required_capabilities);
    bytes.extend_from_slice(&spec.priority.to_le_bytes());
    match &spec.parent_id {
        None => bytes.push(0),
        Some(parent) => {
            bytes.push(1);
            put_text(&mut bytes, parent);
        }
    }
    put_list(&mut bytes, &spec.depends_on);
    bytes.push(u8::from(spec.require_all_capabilities));
    bytes.extend_from_slice(&spec.payload);
    bytes
}

pub fn decode_spec(bytes: &[u8]) -> StoreResult<SubtaskSpec> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.byte()? != VERSION {
        return Err(corrupt("unknown version"));
    }
    let subtask_id = reader.text()?;
    let specialist_type = reader.text()?;
    let required_capabilities = reader.list()?;
    let priority = i32::from_le_bytes(reader.array::<4>()?);
    let parent_id = match reader.byte()? {
        0 => None,
        1 => Some(reader.text()?),
        _ => return Err(corrupt("bad parent flag")),
    };
    let depends_on = reader.list()?;
    let require_all_capabilities = match reader.byte()? {
        0 => false,
        1 => true,
        _ => return Err(corrupt("bad require-all flag")),
    };
    let payload = bytes[reader.at..].to_vec();
    Ok(SubtaskSpec {
        subtask_id,
        specialist_type,
        required_capabilities,
        priority,
        parent_id,
        depends_on,
        payload,
        require_all_capabilities,
    })
}

fn put_text(bytes: &mut Vec<u8>, text: &str) {
    bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
    bytes.extend_from_slice(text.as_bytes());
}

fn put_list(bytes: &mut Vec<u8>, items: &[String]) {
    bytes.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        put_text(bytes, item);
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("stored subtask: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> StoreResult<&[u8]> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> StoreResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> StoreResult<[u8; N]> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn length(&mut self) -> StoreResult<usize> {
        Ok(u32::from_le_bytes(self.array::<4>()?) as usize)
    }

    fn text(&mut self) -> StoreResult<String> {
        let length = self.length()?;
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| corrupt("text is not utf-8"))
    }

    fn list(&mut self) -> StoreResult<Vec<String>> {
        let count = self.length()?;
        let mut items = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            items.push(self.text()?);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SubtaskSpec {
        SubtaskSpec {
            subtask_id: "t1".into(),
            specialist_type: "backend".into(),
            required_capabilities: vec!["go".into(), "sql".into()],
            priority: 7,
            parent_id: Some("plan".into()),
            depends_on: vec!["t0".into()],
            payload: vec![0, 255, 10, 32],
            require_all_capabilities: true,
        }
    }

    #[test]
    fn round_trips() {
        let original = spec();
        assert_eq!(decode_spec(&encode_spec(&original)).unwrap(), original);
        let bare = SubtaskSpec {
            parent_id: None,
            payload: Vec::new(),
            required_capabilities: Vec::new(),
            depends_on: Vec::new(),
            ..spec()
        };
        assert_eq!(decode_spec(&encode_spec(&bare)).unwrap(), bare);
    }

    #[test]
    fn equal_specs_give_equal_bytes_and_others_differ() {
        assert_eq!(encode_spec(&spec()), encode_spec(&spec()));
        let other = SubtaskSpec {
            priority: 8,
            ..spec()
        };
        assert_ne!(encode_spec(&spec()), encode_spec(&other));
    }

    #[test]
    fn refuses_damaged_bytes() {
        let bytes = encode_spec(&spec());
        assert!(decode_spec(&bytes[..5]).is_err());
        assert!(decode_spec(&[9]).is_err());
    }
}
