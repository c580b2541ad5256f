//! Delivery receipts: reading them from deliver_sm (TLVs first, else the receipt text), mapping
//! ids between the SMSC's formats, and the bounded table that turns the receipts of a long
//! message's parts into one receipt for the message.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;
use verify_carrier::ReceiptStatus;

use crate::config::ReceiptIdFormat;
use crate::pdu::{ShortMessage, tag};
use crate::text::DATA_CODING_UCS2;
use verify_carrier::gsm7;

/// What one deliver_sm receipt says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReceipt {
    /// The SMSC's id of the receipted message, as the receipt gives it.
    pub id: String,
    /// Final outcome; `None` for intermediate states (accepted, en route, unknown).
    pub status: Option<ReceiptStatus>,
    /// The SMSC's words, e.g. `stat:UNDELIV err:001`.
    pub detail: String,
}

/// Fields of a receipt text (`id:… sub:… dlvrd:… submit date:… done date:… stat:… err:…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptText {
    /// `id`.
    pub id: Option<String>,
    /// `stat`, upper-cased.
    pub stat: Option<String>,
    /// `err`.
    pub err: Option<String>,
}

/// Reads a receipt text, tolerating any case, extra spaces around `:` and a trailing `text:`.
pub fn parse_receipt_text(text: &str) -> ReceiptText {
    let lower = text.to_ascii_lowercase();
    // Whatever follows `text:` is the message's first characters and may contain anything.
    let end = find_key(&lower, "text", usize::MAX).map_or(text.len(), |(start, _)| start);
    let field = |key: &str| -> Option<String> {
        let (_, at) = find_key(&lower, key, end)?;
        let after = text.get(at..end)?;
        let after = after.trim_start_matches(|c: char| c.is_whitespace());
        let after = after.strip_prefix(':')?.trim_start();
        let value: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
        (!value.is_empty()).then_some(value)
    };
    ReceiptText {
        id: field("id"),
        stat: field("stat").map(|s| s.to_ascii_uppercase()),
        err: field("err"),
    }
}

/// Where `key` starts and ends (at a word start, followed by optional spaces and `:`), when
/// it starts before `end`.
fn find_key(lower: &str, key: &str, end: usize) -> Option<(usize, usize)> {
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(found) = lower[from..].find(key) {
        let start = from + found;
        let after = start + key.len();
        if start >= end {
            return None;
        }
        let word_start = start == 0 || bytes[start - 1].is_ascii_whitespace();
        let rest = lower[after..].trim_start();
        if word_start && rest.starts_with(':') {
            return Some((start, after));
        }
        from = start + key.len();
    }
    None
}

/// The outcome a receipt `stat` names; `None` for intermediate or unknown states.
pub fn status_from_stat(stat: &str) -> Option<ReceiptStatus> {
    match stat {
        "DELIVRD" | "DELIVERED" => Some(ReceiptStatus::Delivered),
        "UNDELIV" | "UNDELIVERABLE" | "EXPIRED" | "REJECTD" | "REJECTED" | "DELETED" => {
            Some(ReceiptStatus::Failed)
        }
        _ => None,
    }
}

/// The outcome of a `message_state` TLV value (SMPP 3.4 section 5.2.28).
pub fn status_from_message_state(state: u8) -> Option<ReceiptStatus> {
    match state {
        2 => Some(ReceiptStatus::Delivered),
        3..=5 | 8 => Some(ReceiptStatus::Failed),
        _ => None,
    }
}

fn message_state_name(state: u8) -> &'static str {
    match state {
        1 => "ENROUTE",
        2 => "DELIVERED",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIVERABLE",
        6 => "ACCEPTED",
        7 => "UNKNOWN",
        8 => "REJECTED",
        _ => "INVALID",
    }
}

/// Reads a receipt from a deliver_sm whose esm_class marks it a receipt. `None` when it names
/// no message id at all.
pub fn parse_deliver_sm(sm: &ShortMessage) -> Option<ParsedReceipt> {
    let octets = sm
        .tlv(tag::MESSAGE_PAYLOAD)
        .filter(|_| sm.short_message.is_empty())
        .unwrap_or(&sm.short_message);
    let text = if sm.data_coding == DATA_CODING_UCS2 {
        let units: Vec<u16> = octets
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else if octets.is_ascii() {
        String::from_utf8_lossy(octets).into_owned()
    } else {
        gsm7::decode(octets)
    };
    let fields = parse_receipt_text(&text);
    let tlv_id = sm
        .tlv(tag::RECEIPTED_MESSAGE_ID)
        .map(|v| {
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            String::from_utf8_lossy(&v[..end]).into_owned()
        })
        .filter(|id| !id.is_empty());
    let tlv_state = sm.tlv(tag::MESSAGE_STATE).and_then(|v| v.first().copied());
    let id = tlv_id.or(fields.id.clone())?;
    let mut detail = String::new();
    if let Some(stat) = &fields.stat {
        detail.push_str("stat:");
        detail.push_str(stat);
    } else if let Some(state) = tlv_state {
        detail.push_str("message_state:");
        detail.push_str(message_state_name(state));
    }
    if let Some(err) = &fields.err {
        detail.push_str(" err:");
        detail.push_str(err);
    } else if let Some(code) = sm.tlv(tag::NETWORK_ERROR_CODE).filter(|v| v.len() == 3) {
        detail.push_str(&format!(
            " network_error:{}/{}",
            code[0],
            u16::from_be_bytes([code[1], code[2]])
        ));
    }
    let status = match tlv_state {
        Some(state) => status_from_message_state(state),
        None => fields.stat.as_deref().and_then(status_from_stat),
    };
    Some(ParsedReceipt {
        id,
        status,
        detail: detail.trim().to_string(),
    })
}

/// The ids a receipt's id may have had in submit_sm_resp, as `format` says (both letter cases
/// for hexadecimal); the id as it is when it is not a number in the expected base.
pub fn map_receipt_id(id: &str, format: ReceiptIdFormat) -> Vec<String> {
    match format {
        ReceiptIdFormat::AsIs => vec![id.to_string()],
        ReceiptIdFormat::HexToDecimal => match u128::from_str_radix(id, 16) {
            Ok(n) => vec![n.to_string()],
            Err(_) => vec![id.to_string()],
        },
        ReceiptIdFormat::DecimalToHex => match id.parse::<u128>() {
            Ok(n) => vec![format!("{n:x}"), format!("{n:X}")],
            Err(_) => vec![id.to_string()],
        },
    }
}

/// A receipt to hand to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The id `submit` returned for the message.
    pub carrier_message_id: String,
    /// verifyd's message id, when known.
    pub message_id: Option<String>,
    /// Outcome.
    pub status: ReceiptStatus,
    /// The SMSC's words.
    pub detail: String,
}

/// One submitted message (one or more parts) awaiting its receipt.
#[derive(Debug)]
struct Group {
    message_id: String,
    carrier_message_id: Option<String>,
    part_ids: Vec<Option<String>>,
    delivered: Vec<bool>,
    accepted: bool,
    reported: bool,
}

#[derive(Debug, Default)]
struct Table {
    groups: HashMap<u64, Group>,
    by_part: HashMap<String, u64>,
    order: VecDeque<u64>,
    next: u64,
    awaiting: usize,
    /// Receipts whose id was unknown when they came, newest last: a receipt read on one
    /// connection can overtake the submit_sm_resp read on another (transmitter + receiver).
    early: HashMap<String, ReceiptStatus>,
    early_order: VecDeque<String>,
}

/// Unknown receipt ids remembered at most.
const EARLY_RECEIPTS: usize = 10_000;

/// The bounded table from the SMSC's part ids to messages: reports a message's receipt once
/// (failed as soon as a part fails, delivered when all parts are), and tells shutdown when
/// every accepted message has its receipt.
#[derive(Debug)]
pub struct Tracker {
    table: Mutex<Table>,
    capacity: usize,
    settled: Notify,
}

/// A message's handle in the [`Tracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupId(u64);

impl Tracker {
    /// A table holding at most `capacity` messages (the oldest are forgotten first).
    pub fn new(capacity: usize) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            capacity: capacity.max(1),
            settled: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking a message of `parts` parts.
    pub fn open(&self, message_id: &str, parts: usize) -> GroupId {
        let mut table = self.lock();
        let id = table.next;
        table.next += 1;
        table.groups.insert(
            id,
            Group {
                message_id: message_id.to_string(),
                carrier_message_id: None,
                part_ids: vec![None; parts],
                delivered: vec![false; parts],
                accepted: false,
                reported: false,
            },
        );
        table.order.push_back(id);
        while table.order.len() > self.capacity {
            if let Some(old) = table.order.pop_front() {
                Self::remove(&mut table, old);
            }
        }
        GroupId(id)
    }

    fn remove(table: &mut Table, id: u64) {
        if let Some(group) = table.groups.remove(&id) {
            if group.accepted && !group.reported {
                table.awaiting = table.awaiting.saturating_sub(1);
            }
            for part in group.part_ids.into_iter().flatten() {
                if table.by_part.get(&part) == Some(&id) {
                    table.by_part.remove(&part);
                }
            }
        }
    }

    /// Records the SMSC's id of part `index` (called when its submit_sm_resp arrives, before
    /// any receipt for it can be read).
    pub fn part_accepted(&self, group: GroupId, index: usize, smsc_id: &str) {
        let mut table = self.lock();
        let Some(entry) = table.groups.get_mut(&group.0) else {
            return;
        };
        if index == 0 {
            entry.carrier_message_id = Some(smsc_id.to_string());
        }
        if let Some(slot) = entry.part_ids.get_mut(index) {
            *slot = Some(smsc_id.to_string());
        }
        // The receipt overtook this response and was reported as it came, under this id.
        if let Some(status) = table.early.remove(smsc_id)
            && let Some(entry) = table.groups.get_mut(&group.0)
        {
            if entry.part_ids.len() == 1 || status == ReceiptStatus::Failed {
                entry.reported = true;
            } else if let Some(done) = entry.delivered.get_mut(index) {
                *done = true;
            }
        }
        table.by_part.insert(smsc_id.to_string(), group.0);
    }

    /// Every part was accepted: the message now counts as awaiting its receipt.
    pub fn accepted(&self, group: GroupId) {
        let mut table = self.lock();
        if let Some(entry) = table.groups.get_mut(&group.0)
            && !entry.accepted
        {
            entry.accepted = true;
            if !entry.reported {
                table.awaiting += 1;
            }
        }
    }

    /// A part was refused: forget the message.
    pub fn abandon(&self, group: GroupId) {
        let mut table = self.lock();
        Self::remove(&mut table, group.0);
        table.order.retain(|&id| id != group.0);
        drop(table);
        self.settled.notify_waiters();
    }

    /// Applies a receipt for SMSC id candidates `ids`; returns the receipt to report, if any.
    pub fn receipt(&self, ids: &[String], status: ReceiptStatus, detail: &str) -> Option<Resolved> {
        let mut reported = None;
        self.receipt_then(ids, status, detail, |resolved| reported = Some(resolved));
        reported
    }

    /// Applies a receipt and hands the receipt to report, if any, to `deliver` before the
    /// message stops counting as awaiting: shutdown never returns between the two.
    pub fn receipt_then(
        &self,
        ids: &[String],
        status: ReceiptStatus,
        detail: &str,
        deliver: impl FnOnce(Resolved),
    ) {
        let mut table = self.lock();
        let found = ids
            .iter()
            .find_map(|id| table.by_part.get(id).map(|&group| (id.clone(), group)));
        let Some((part_id, group_id)) = found else {
            // Not ours to merge (sent before a restart, or forgotten): report it as it came.
            for id in ids {
                if table.early.insert(id.clone(), status).is_none() {
                    table.early_order.push_back(id.clone());
                }
            }
            while table.early_order.len() > EARLY_RECEIPTS {
                if let Some(old) = table.early_order.pop_front() {
                    table.early.remove(&old);
                }
            }
            if let Some(id) = ids.first() {
                deliver(Resolved {
                    carrier_message_id: id.clone(),
                    message_id: None,
                    status,
                    detail: detail.to_string(),
                });
            }
            return;
        };
        let Some(group) = table.groups.get_mut(&group_id) else {
            return;
        };
        if group.reported {
            return;
        }
        let Some(index) = group
            .part_ids
            .iter()
            .position(|p| p.as_deref() == Some(part_id.as_str()))
        else {
            return;
        };
        let report = match status {
            ReceiptStatus::Failed => true,
            ReceiptStatus::Delivered => {
                group.delivered[index] = true;
                group.delivered.iter().all(|&d| d)
            }
        };
        if !report {
            return;
        }
        group.reported = true;
        let resolved = Resolved {
            carrier_message_id: group.carrier_message_id.clone().unwrap_or(part_id),
            message_id: Some(group.message_id.clone()),
            status,
            detail: detail.to_string(),
        };
        let was_awaiting = group.accepted;
        let single = group.part_ids.len() == 1;
        deliver(resolved);
        if was_awaiting {
            table.awaiting = table.awaiting.saturating_sub(1);
        }
        if single || status == ReceiptStatus::Delivered {
            Self::remove(&mut table, group_id);
        }
        drop(table);
        self.settled.notify_waiters();
    }

    /// How many accepted messages still await their receipt.
    pub fn awaiting(&self) -> usize {
        self.lock().awaiting
    }

    /// Waits until no accepted message awaits a receipt.
    pub async fn wait_settled(&self) {
        loop {
            let settled = self.settled.notified();
            if self.awaiting() == 0 {
                return;
            }
            settled.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::Tlv;
    use bytes::Bytes;

    #[test]
    fn receipt_text_in_the_usual_form() {
        let text = "id:0123456789 sub:001 dlvrd:001 submit date:2311250930 done date:2311250931 stat:DELIVRD err:000 text:Your code";
        let parsed = parse_receipt_text(text);
        assert_eq!(parsed.id.as_deref(), Some("0123456789"));
        assert_eq!(parsed.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(parsed.err.as_deref(), Some("000"));
    }

    #[test]
    fn receipt_text_with_odd_spacing_case_and_text() {
        let text = "ID: ab12CD  Sub:1 Dlvrd:0   Submit Date:2311250930 Done Date:2311250931 Stat : undeliv  ERR:001 Text:id:fake stat:DELIVRD";
        let parsed = parse_receipt_text(text);
        assert_eq!(parsed.id.as_deref(), Some("ab12CD"));
        assert_eq!(parsed.stat.as_deref(), Some("UNDELIV"));
        assert_eq!(parsed.err.as_deref(), Some("001"));
        assert_eq!(status_from_stat("UNDELIV"), Some(ReceiptStatus::Failed));
        assert_eq!(status_from_stat("ENROUTE"), None);
        assert_eq!(status_from_stat("ACCEPTD"), None);
        assert_eq!(parse_receipt_text("no fields here"), ReceiptText::default());
        // Arbitrary text never panics.
        for text in [
            "id:",
            "text:id:1",
            "id :  stat:",
            "ÿid:é stat:ü text:",
            "stat text: id",
            "idid:1",
        ] {
            let _ = parse_receipt_text(text);
        }
        assert_eq!(parse_receipt_text("idid:1").id, None);
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let sm = ShortMessage {
            esm_class: 0x04,
            short_message: Bytes::from_static(b"id:999 stat:DELIVRD err:000"),
            tlvs: vec![
                Tlv {
                    tag: tag::RECEIPTED_MESSAGE_ID,
                    value: Bytes::from_static(b"42\0"),
                },
                Tlv {
                    tag: tag::MESSAGE_STATE,
                    value: Bytes::from_static(&[5]),
                },
            ],
            ..ShortMessage::default()
        };
        let parsed = parse_deliver_sm(&sm).expect("a receipt");
        assert_eq!(parsed.id, "42");
        assert_eq!(parsed.status, Some(ReceiptStatus::Failed));
        let only_tlvs = ShortMessage {
            short_message: Bytes::new(),
            ..sm
        };
        let parsed = parse_deliver_sm(&only_tlvs).expect("a receipt");
        assert_eq!(parsed.detail, "message_state:UNDELIVERABLE");
        assert_eq!(
            status_from_message_state(6),
            None,
            "ACCEPTED is intermediate"
        );
        assert_eq!(status_from_message_state(2), Some(ReceiptStatus::Delivered));
    }

    #[test]
    fn ids_map_between_hex_and_decimal() {
        assert_eq!(
            map_receipt_id("1F", ReceiptIdFormat::HexToDecimal),
            vec!["31"]
        );
        assert_eq!(
            map_receipt_id("31", ReceiptIdFormat::DecimalToHex),
            vec!["1f", "1F"]
        );
        assert_eq!(
            map_receipt_id("xyz", ReceiptIdFormat::HexToDecimal),
            vec!["xyz"]
        );
        assert_eq!(map_receipt_id("abc", ReceiptIdFormat::AsIs), vec!["abc"]);
    }

    #[test]
    fn long_message_reports_once() {
        let tracker = Tracker::new(10);
        let group = tracker.open("msg_1", 3);
        tracker.part_accepted(group, 0, "a");
        tracker.part_accepted(group, 1, "b");
        tracker.part_accepted(group, 2, "c");
        tracker.accepted(group);
        assert_eq!(tracker.awaiting(), 1);
        let ok = ReceiptStatus::Delivered;
        assert_eq!(tracker.receipt(&["b".into()], ok, "stat:DELIVRD"), None);
        assert_eq!(tracker.receipt(&["b".into()], ok, "stat:DELIVRD"), None);
        assert_eq!(tracker.receipt(&["a".into()], ok, "stat:DELIVRD"), None);
        let done = tracker
            .receipt(&["c".into()], ok, "stat:DELIVRD")
            .expect("reported");
        assert_eq!(done.carrier_message_id, "a");
        assert_eq!(done.message_id.as_deref(), Some("msg_1"));
        assert_eq!(tracker.awaiting(), 0);

        let group = tracker.open("msg_2", 2);
        tracker.part_accepted(group, 0, "d");
        tracker.part_accepted(group, 1, "e");
        tracker.accepted(group);
        let failed = tracker
            .receipt(&["e".into()], ReceiptStatus::Failed, "stat:UNDELIV")
            .expect("failed at once");
        assert_eq!(failed.carrier_message_id, "d");
        assert_eq!(tracker.receipt(&["d".into()], ok, "stat:DELIVRD"), None);
        assert_eq!(tracker.awaiting(), 0);
    }

    #[test]
    fn a_receipt_that_overtakes_its_response_is_reported_once() {
        let tracker = Tracker::new(10);
        let early = tracker
            .receipt(&["x1".into()], ReceiptStatus::Delivered, "stat:DELIVRD")
            .expect("reported as it came");
        assert_eq!(early.carrier_message_id, "x1");
        let group = tracker.open("msg_1", 1);
        tracker.part_accepted(group, 0, "x1");
        tracker.accepted(group);
        assert_eq!(tracker.awaiting(), 0, "shutdown does not wait for it again");
        assert_eq!(
            tracker.receipt(&["x1".into()], ReceiptStatus::Delivered, ""),
            None
        );
    }

    #[test]
    fn table_is_bounded_and_unknown_ids_pass_through() {
        let tracker = Tracker::new(2);
        for n in 0..5 {
            let group = tracker.open(&format!("msg_{n}"), 1);
            tracker.part_accepted(group, 0, &n.to_string());
            tracker.accepted(group);
        }
        assert_eq!(tracker.awaiting(), 2);
        let unknown = tracker
            .receipt(&["0".into()], ReceiptStatus::Delivered, "")
            .expect("passed through");
        assert_eq!(unknown.message_id, None);
        let known = tracker
            .receipt(&["4".into()], ReceiptStatus::Delivered, "")
            .expect("known");
        assert_eq!(known.message_id.as_deref(), Some("msg_4"));
    }
}
