//! Outbox event ids, `<type>/<millis>-<seq>`: the stream they came from and their position in it.
//!
//! Rows remember the position of the last event applied to them and take only later ones. Within
//! one stream positions are exact (Redis stream ids only grow); a subtask or specialist lives in one
//! type, so its events come from one stream. A specialist that deregisters and registers again
//! under another type moves streams; its positions then compare by Redis `TIME` milliseconds.

use std::cmp::Ordering;

use super::error::PgError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId<'a> {
    pub raw: &'a str,
    /// The specialist type whose stream carried the event.
    pub stream_type: &'a str,
    pub millis: i64,
    pub seq: i64,
}

impl<'a> EventId<'a> {
    pub fn parse(raw: &'a str) -> Result<Self, PgError> {
        let malformed = || PgError::invalid_event(raw, "event id is not <type>/<millis>-<seq>");
        // The type is everything before the last '/', so a type containing '/' still parses.
        let (stream_type, position) = raw.rsplit_once('/').ok_or_else(malformed)?;
        let (millis, seq) = position.split_once('-').ok_or_else(malformed)?;
        if stream_type.is_empty() || !is_digits(millis) || !is_digits(seq) {
            return Err(malformed());
        }
        let out_of_range = || PgError::invalid_event(raw, "event id position out of range");
        Ok(EventId {
            raw,
            stream_type,
            millis: millis.parse().map_err(|_| out_of_range())?,
            seq: seq.parse().map_err(|_| out_of_range())?,
        })
    }

    pub fn position(&self) -> (i64, i64) {
        (self.millis, self.seq)
    }
}

impl Ord for EventId<'_> {
    /// Position first; the raw id only breaks ties between streams, so the order is total.
    fn cmp(&self, other: &Self) -> Ordering {
        self.position()
            .cmp(&other.position())
            .then_with(|| self.raw.cmp(other.raw))
    }
}

impl PartialOrd for EventId<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_and_position() {
        let id = EventId::parse("frontend/1700000000123-7").unwrap();
        assert_eq!(id.stream_type, "frontend");
        assert_eq!(id.position(), (1_700_000_000_123, 7));
        let slashed = EventId::parse("team/a/5-0").unwrap();
        assert_eq!(slashed.stream_type, "team/a");
    }

    #[test]
    fn compares_by_parts_not_text() {
        let earlier = EventId::parse("t/999-10").unwrap();
        let later = EventId::parse("t/1000-2").unwrap();
        assert!(earlier < later, "999 < 1000 although '9' > '1'");
        let same_ms_low = EventId::parse("t/1000-2").unwrap();
        let same_ms_high = EventId::parse("t/1000-10").unwrap();
        assert!(same_ms_low < same_ms_high);
    }

    #[test]
    fn refuses_malformed_ids() {
        for raw in [
            "",
            "1000-1",
            "t/1000",
            "/1000-1",
            "t/-1",
            "t/1000-",
            "t/10a0-1",
            "t/+1-1",
            "t/99999999999999999999-1",
        ] {
            assert!(EventId::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }
}
