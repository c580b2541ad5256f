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

/// A base an SMSC may write its numeric message ids in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Decimal,
    Hex,
}

impl Base {
    fn radix(self) -> u32 {
        match self {
            Base::Decimal => 10,
            Base::Hex => 16,
        }
    }

    fn tag(self) -> char {
        match self {
            Base::Decimal => 'd',
            Base::Hex => 'x',
        }
    }
}

/// How a receipt's id spells the id submit_sm_resp gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMapping {
    /// The same string.
    AsIs,
    /// Both decimal, leading zeros aside.
    SameDecimal,
    /// Both hexadecimal, leading zeros and letter case aside.
    SameHex,
    /// The receipt in hexadecimal, submit_sm_resp in decimal.
    HexToDecimal,
    /// The receipt in decimal, submit_sm_resp in hexadecimal.
    DecimalToHex,
}

impl IdMapping {
    /// The receipt's base and submit_sm_resp's base; `None` for [`IdMapping::AsIs`].
    fn bases(self) -> Option<(Base, Base)> {
        match self {
            IdMapping::AsIs => None,
            IdMapping::SameDecimal => Some((Base::Decimal, Base::Decimal)),
            IdMapping::SameHex => Some((Base::Hex, Base::Hex)),
            IdMapping::HexToDecimal => Some((Base::Hex, Base::Decimal)),
            IdMapping::DecimalToHex => Some((Base::Decimal, Base::Hex)),
        }
    }

    /// The mappings `format` allows, in the order they are tried.
    fn allowed(format: ReceiptIdFormat) -> &'static [IdMapping] {
        match format {
            ReceiptIdFormat::Auto => &[
                IdMapping::AsIs,
                IdMapping::SameDecimal,
                IdMapping::SameHex,
                IdMapping::HexToDecimal,
                IdMapping::DecimalToHex,
            ],
            ReceiptIdFormat::AsIs => &[IdMapping::AsIs],
            ReceiptIdFormat::HexToDecimal => &[IdMapping::HexToDecimal, IdMapping::AsIs],
            ReceiptIdFormat::DecimalToHex => &[IdMapping::DecimalToHex, IdMapping::AsIs],
        }
    }
}

/// `id` as a number in `base` without leading zeros (hexadecimal in lower case); `None` when it
/// is not one.
fn canonical(id: &str, base: Base) -> Option<String> {
    if id.is_empty() || !id.chars().all(|c| c.is_digit(base.radix())) {
        return None;
    }
    let trimmed = id.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_ascii_lowercase()
    })
}

/// Rewrites the digits of a number from base `from` into base `to`, at any length (ids can be
/// longer than any integer type).
fn convert(digits: &str, from: Base, to: Base) -> String {
    if from == to {
        return digits.to_string();
    }
    let mut number: Vec<u32> = digits
        .chars()
        .filter_map(|c| c.to_digit(from.radix()))
        .collect();
    let mut out = Vec::new();
    while !number.is_empty() {
        // One long division of `number` by the target radix; the remainder is the next digit.
        let mut remainder = 0;
        let mut quotient = Vec::with_capacity(number.len());
        for digit in number {
            let value = remainder * from.radix() + digit;
            let next = value / to.radix();
            remainder = value % to.radix();
            if !(quotient.is_empty() && next == 0) {
                quotient.push(next);
            }
        }
        out.push(char::from_digit(remainder, to.radix()).unwrap_or('0'));
        number = quotient;
    }
    if out.is_empty() {
        return "0".to_string();
    }
    out.iter().rev().collect()
}

/// The table key of a submit_sm_resp id read as a number in `base`.
fn value_key(base: Base, canonical: &str) -> String {
    format!("{}:{canonical}", base.tag())
}

/// The table key of an id as it is.
fn exact_key(id: &str) -> String {
    format!("={id}")
}

/// The keys a submit_sm_resp id is found under: as it is, and as a number in each base it
/// can be read in.
fn submit_keys(id: &str) -> Vec<String> {
    let mut keys = vec![exact_key(id)];
    for base in [Base::Decimal, Base::Hex] {
        if let Some(value) = canonical(id, base) {
            keys.push(value_key(base, &value));
        }
    }
    keys
}

/// The key a receipt id `id` is looked up under when it spells the submit id by `mapping`.
fn receipt_key(id: &str, mapping: IdMapping) -> Option<String> {
    let Some((receipt_base, submit_base)) = mapping.bases() else {
        return Some(exact_key(id));
    };
    let value = canonical(id, receipt_base)?;
    Some(value_key(
        submit_base,
        &convert(&value, receipt_base, submit_base),
    ))
}

/// How submit_sm_resp may have spelled the id a receipt gives as `id` by `mapping` (both letter
/// cases for hexadecimal), leading zeros left out; empty for [`IdMapping::AsIs`] or an id that
/// is not a number in the receipt's base.
pub fn spellings(id: &str, mapping: IdMapping) -> Vec<String> {
    let Some((receipt_base, submit_base)) = mapping.bases() else {
        return Vec::new();
    };
    let Some(value) = canonical(id, receipt_base) else {
        return Vec::new();
    };
    let spelled = convert(&value, receipt_base, submit_base);
    match submit_base {
        Base::Decimal => vec![spelled],
        Base::Hex => vec![spelled.clone(), spelled.to_ascii_uppercase()],
    }
}

/// The ids a receipt's id may have had in submit_sm_resp, as `format` allows, in the order
/// they are tried; the id as it is among them wherever `format` allows it.
pub fn map_receipt_id(id: &str, format: ReceiptIdFormat) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for &mapping in IdMapping::allowed(format) {
        let candidates = match mapping {
            IdMapping::AsIs => vec![id.to_string()],
            _ => spellings(id, mapping),
        };
        for candidate in candidates {
            if !ids.contains(&candidate) {
                ids.push(candidate);
            }
        }
    }
    ids
}

/// A receipt to hand to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The id `submit` returned for the message; for a message the tracker does not know, the
    /// id as the receipt gave it.
    pub carrier_message_id: String,
    /// verifyd's message id, when known.
    pub message_id: Option<String>,
    /// Outcome.
    pub status: ReceiptStatus,
    /// The SMSC's words.
    pub detail: String,
    /// For a message the tracker does not know: how submit_sm_resp may have spelled its id
    /// (the other base, no leading zeros), the remembered mapping's first.
    pub alternative_ids: Vec<String>,
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
    /// Groups by the keys of their parts' ids ([`submit_keys`]).
    by_part: HashMap<String, u64>,
    order: VecDeque<u64>,
    next: u64,
    awaiting: usize,
    /// Receipts whose id was unknown when they came, by the keys their id may match, newest
    /// last: a receipt read on one connection can overtake the submit_sm_resp read on another
    /// (transmitter + receiver).
    /// Each is kept under the id as it is, and under the mapping in force (the configured or
    /// learned one) when there is one: guessing among all mappings could pair a stale receipt
    /// with a later message that happens to carry the same number in the other base.
    early: HashMap<String, (String, ReceiptStatus)>,
    early_order: VecDeque<String>,
    /// The mapping that last matched a receipt other than as it is ([`ReceiptIdFormat::Auto`]).
    learned: Option<IdMapping>,
}

/// Unknown receipt ids remembered at most.
const EARLY_RECEIPTS: usize = 10_000;

/// The bounded table from the SMSC's part ids to messages: reports a message's receipt once
/// (failed as soon as a part fails, delivered when all parts are), matches receipt ids to
/// submit_sm_resp ids as [`ReceiptIdFormat`] says, and tells shutdown when every accepted
/// message has its receipt.
#[derive(Debug)]
pub struct Tracker {
    table: Mutex<Table>,
    capacity: usize,
    format: ReceiptIdFormat,
    settled: Notify,
}

/// A message's handle in the [`Tracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupId(u64);

impl Tracker {
    /// A table holding at most `capacity` messages (the oldest are forgotten first) that maps
    /// receipt ids as `format` says.
    pub fn new(capacity: usize, format: ReceiptIdFormat) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            capacity: capacity.max(1),
            format,
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
                for key in submit_keys(&part) {
                    if table.by_part.get(&key) == Some(&id) {
                        table.by_part.remove(&key);
                    }
                }
            }
        }
    }

    /// The mappings to try for a receipt, the remembered one first.
    fn mappings(&self, table: &Table) -> Vec<IdMapping> {
        let allowed = IdMapping::allowed(self.format);
        let learned = table.learned.filter(|m| allowed.contains(m));
        learned
            .into_iter()
            .chain(allowed.iter().copied().filter(|&m| Some(m) != learned))
            .collect()
    }

    /// The mapping early receipts are also kept under: the configured one, or for
    /// [`ReceiptIdFormat::Auto`] the learned one.
    fn early_mapping(&self, table: &Table) -> Option<IdMapping> {
        match self.format {
            ReceiptIdFormat::Auto => table.learned,
            ReceiptIdFormat::AsIs => None,
            ReceiptIdFormat::HexToDecimal => Some(IdMapping::HexToDecimal),
            ReceiptIdFormat::DecimalToHex => Some(IdMapping::DecimalToHex),
        }
    }

    /// The keys an early receipt for `id` is kept under.
    fn early_keys(&self, table: &Table, id: &str) -> Vec<String> {
        let mut keys = vec![exact_key(id)];
        if let Some(key) = self
            .early_mapping(table)
            .and_then(|mapping| receipt_key(id, mapping))
            && !keys.contains(&key)
        {
            keys.push(key);
        }
        keys
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
        let keys = submit_keys(smsc_id);
        // The receipt overtook this response and was reported as it came, under its own id.
        let early = keys.iter().find_map(|key| table.early.remove(key));
        if let Some((receipt_id, _)) = &early {
            for key in self.early_keys(&table, receipt_id) {
                table.early.remove(&key);
            }
        }
        if let Some((_, status)) = early
            && let Some(entry) = table.groups.get_mut(&group.0)
        {
            if entry.part_ids.len() == 1 || status == ReceiptStatus::Failed {
                entry.reported = true;
            } else if let Some(done) = entry.delivered.get_mut(index) {
                *done = true;
            }
        }
        for key in keys {
            table.by_part.insert(key, group.0);
        }
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

    /// A part was refused before anything went out: forget the message.
    pub fn abandon(&self, group: GroupId) {
        let mut table = self.lock();
        Self::remove(&mut table, group.0);
        table.order.retain(|&id| id != group.0);
        drop(table);
        self.settled.notify_waiters();
    }

    /// Applies a receipt for the SMSC id `id`; returns the receipt to report, if any.
    pub fn receipt(&self, id: &str, status: ReceiptStatus, detail: &str) -> Option<Resolved> {
        let mut reported = None;
        self.receipt_then(id, status, detail, |resolved| reported = Some(resolved));
        reported
    }

    /// Applies a receipt for the SMSC id `id` and hands the receipt to report, if any, to
    /// `deliver` before the message stops counting as awaiting: shutdown never returns between
    /// the two. `deliver` runs under the table's lock and must not wait.
    pub fn receipt_then(
        &self,
        id: &str,
        status: ReceiptStatus,
        detail: &str,
        deliver: impl FnOnce(Resolved),
    ) {
        let mut table = self.lock();
        let mappings = self.mappings(&table);
        let found = mappings.iter().find_map(|&mapping| {
            let key = receipt_key(id, mapping)?;
            table.by_part.get(&key).map(|&group| (mapping, key, group))
        });
        let Some((mapping, key, group_id)) = found else {
            // Not ours to merge (sent before a restart, or forgotten): report it as it came,
            // with the other spellings the server may know it by.
            for key in self.early_keys(&table, id) {
                if table
                    .early
                    .insert(key.clone(), (id.to_string(), status))
                    .is_none()
                {
                    table.early_order.push_back(key);
                }
            }
            while table.early_order.len() > EARLY_RECEIPTS {
                if let Some(old) = table.early_order.pop_front() {
                    table.early.remove(&old);
                }
            }
            let mut alternative_ids: Vec<String> = Vec::new();
            for spelled in mappings.iter().flat_map(|&m| spellings(id, m)) {
                if spelled != id && !alternative_ids.contains(&spelled) {
                    alternative_ids.push(spelled);
                }
            }
            deliver(Resolved {
                carrier_message_id: id.to_string(),
                message_id: None,
                status,
                detail: detail.to_string(),
                alternative_ids,
            });
            return;
        };
        if mapping != IdMapping::AsIs && self.format == ReceiptIdFormat::Auto {
            table.learned = Some(mapping);
        }
        let Some(group) = table.groups.get_mut(&group_id) else {
            return;
        };
        if group.reported {
            return;
        }
        let Some(index) = group
            .part_ids
            .iter()
            .position(|p| p.as_deref().is_some_and(|p| submit_keys(p).contains(&key)))
        else {
            return;
        };
        let part_id = group.part_ids[index].clone().unwrap_or_default();
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
            alternative_ids: Vec::new(),
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
            vec!["31", "1F"]
        );
        assert_eq!(
            map_receipt_id("31", ReceiptIdFormat::DecimalToHex),
            vec!["1f", "1F", "31"]
        );
        assert_eq!(
            map_receipt_id("xyz", ReceiptIdFormat::HexToDecimal),
            vec!["xyz"]
        );
        assert_eq!(map_receipt_id("abc", ReceiptIdFormat::AsIs), vec!["abc"]);
        assert_eq!(
            map_receipt_id("0001000", ReceiptIdFormat::Auto),
            vec!["0001000", "1000", "4096", "3e8", "3E8"]
        );
    }

    #[test]
    fn spellings_drop_leading_zeros_and_cover_both_cases_and_any_length() {
        assert_eq!(
            spellings("000255", IdMapping::DecimalToHex),
            vec!["ff", "FF"]
        );
        assert_eq!(spellings("00fF", IdMapping::HexToDecimal), vec!["255"]);
        assert_eq!(spellings("00AbC", IdMapping::SameHex), vec!["abc", "ABC"]);
        assert_eq!(spellings("0000", IdMapping::SameDecimal), vec!["0"]);
        assert!(spellings("12G", IdMapping::HexToDecimal).is_empty());
        assert!(spellings("", IdMapping::DecimalToHex).is_empty());
        assert!(spellings("123", IdMapping::AsIs).is_empty());
        // Beyond u64, and beyond u128.
        assert_eq!(
            spellings("123456789012345678901234567890", IdMapping::DecimalToHex),
            vec!["18ee90ff6c373e0ee4e3f0ad2", "18EE90FF6C373E0EE4E3F0AD2"]
        );
        assert_eq!(
            spellings(
                "ffffffffffffffffffffffffffffffffff",
                IdMapping::HexToDecimal
            ),
            vec!["87112285931760246646623899502532662132735"]
        );
        let long = "98765432109876543210987654321098765432109876543210";
        let hex = spellings(long, IdMapping::DecimalToHex);
        assert_eq!(hex[0], "4393fb25a23480e82908ce2957cfb667d751c67eea");
        assert_eq!(spellings(&hex[1], IdMapping::HexToDecimal), vec![long]);
    }

    fn tracked(tracker: &Tracker, message_id: &str, smsc_id: &str) {
        let group = tracker.open(message_id, 1);
        tracker.part_accepted(group, 0, smsc_id);
        tracker.accepted(group);
    }

    #[test]
    fn auto_matches_the_other_base_and_remembers_the_mapping() {
        let tracker = Tracker::new(10, ReceiptIdFormat::Auto);
        let ok = ReceiptStatus::Delivered;
        // submit_sm_resp in hexadecimal with leading zeros, the receipt in decimal.
        tracked(&tracker, "msg_1", "000F4240");
        let found = tracker.receipt("1000000", ok, "").expect("matched");
        assert_eq!(found.carrier_message_id, "000F4240");
        assert_eq!(found.message_id.as_deref(), Some("msg_1"));
        // Learned: decimal receipts name hexadecimal ids, tried before the id as it is. "30"
        // as it is names msg_3, but this SMSC means 0x1E (msg_2).
        tracked(&tracker, "msg_2", "1E");
        tracked(&tracker, "msg_3", "30");
        let found = tracker.receipt("30", ok, "").expect("matched");
        assert_eq!(found.message_id.as_deref(), Some("msg_2"));
        assert_eq!(tracker.awaiting(), 1);
        // Upper or lower case, leading zeros on either side.
        let tracker = Tracker::new(10, ReceiptIdFormat::Auto);
        tracked(&tracker, "msg_4", "abc");
        tracked(&tracker, "msg_5", "0042");
        let found = tracker.receipt("0ABC", ok, "").expect("same hex");
        assert_eq!(found.message_id.as_deref(), Some("msg_4"));
        let found = tracker.receipt("42", ok, "").expect("same decimal");
        assert_eq!(found.message_id.as_deref(), Some("msg_5"));
        assert_eq!(tracker.awaiting(), 0);
    }

    #[test]
    fn an_override_tries_only_its_mapping_and_the_id_as_it_is() {
        let tracker = Tracker::new(10, ReceiptIdFormat::AsIs);
        tracked(&tracker, "msg_1", "F4240");
        let unknown = tracker
            .receipt("1000000", ReceiptStatus::Delivered, "")
            .expect("reported as it came");
        assert_eq!(unknown.message_id, None);
        assert!(unknown.alternative_ids.is_empty());
        let tracker = Tracker::new(10, ReceiptIdFormat::DecimalToHex);
        tracked(&tracker, "msg_1", "F4240");
        let found = tracker
            .receipt("1000000", ReceiptStatus::Delivered, "")
            .expect("matched");
        assert_eq!(found.message_id.as_deref(), Some("msg_1"));
    }

    #[test]
    fn an_unknown_receipt_names_the_other_spellings_the_remembered_first() {
        let tracker = Tracker::new(10, ReceiptIdFormat::Auto);
        let unknown = tracker
            .receipt("1000000", ReceiptStatus::Failed, "stat:UNDELIV")
            .expect("reported as it came");
        assert_eq!(unknown.carrier_message_id, "1000000");
        assert_eq!(unknown.message_id, None);
        assert_eq!(unknown.status, ReceiptStatus::Failed);
        assert_eq!(unknown.alternative_ids, vec!["16777216", "f4240", "F4240"]);
        tracked(&tracker, "msg_1", "1E");
        tracker
            .receipt("30", ReceiptStatus::Delivered, "")
            .expect("matched");
        let unknown = tracker
            .receipt("1000001", ReceiptStatus::Delivered, "")
            .expect("reported as it came");
        assert_eq!(unknown.alternative_ids, vec!["f4241", "F4241", "16777217"]);
    }

    #[test]
    fn a_receipt_in_the_other_base_that_overtakes_its_response_is_reported_once() {
        let tracker = Tracker::new(10, ReceiptIdFormat::Auto);
        tracked(&tracker, "msg_0", "1E");
        tracker.receipt("30", ReceiptStatus::Delivered, "");
        tracker
            .receipt("255", ReceiptStatus::Delivered, "")
            .expect("reported as it came");
        tracked(&tracker, "msg_1", "FF");
        assert_eq!(tracker.awaiting(), 0, "shutdown does not wait for it again");
        // Before a mapping is known, only the id as it is waits for its response: a number
        // read in the other base could name a later message.
        let tracker = Tracker::new(10, ReceiptIdFormat::Auto);
        tracker.receipt("255", ReceiptStatus::Delivered, "");
        tracked(&tracker, "msg_2", "597");
        tracked(&tracker, "msg_3", "FF");
        assert_eq!(tracker.awaiting(), 2);
    }

    #[test]
    fn long_message_reports_once() {
        let tracker = Tracker::new(10, ReceiptIdFormat::Auto);
        let group = tracker.open("msg_1", 3);
        tracker.part_accepted(group, 0, "a");
        tracker.part_accepted(group, 1, "b");
        tracker.part_accepted(group, 2, "c");
        tracker.accepted(group);
        assert_eq!(tracker.awaiting(), 1);
        let ok = ReceiptStatus::Delivered;
        assert_eq!(tracker.receipt("b", ok, "stat:DELIVRD"), None);
        assert_eq!(tracker.receipt("b", ok, "stat:DELIVRD"), None);
        assert_eq!(tracker.receipt("a", ok, "stat:DELIVRD"), None);
        let done = tracker.receipt("c", ok, "stat:DELIVRD").expect("reported");
        assert_eq!(done.carrier_message_id, "a");
        assert_eq!(done.message_id.as_deref(), Some("msg_1"));
        assert_eq!(tracker.awaiting(), 0);

        let group = tracker.open("msg_2", 2);
        tracker.part_accepted(group, 0, "d");
        tracker.part_accepted(group, 1, "e");
        tracker.accepted(group);
        let failed = tracker
            .receipt("e", ReceiptStatus::Failed, "stat:UNDELIV")
            .expect("failed at once");
        assert_eq!(failed.carrier_message_id, "d");
        assert_eq!(tracker.receipt("d", ok, "stat:DELIVRD"), None);
        assert_eq!(tracker.awaiting(), 0);
    }

    #[test]
    fn a_receipt_that_overtakes_its_response_is_reported_once() {
        let tracker = Tracker::new(10, ReceiptIdFormat::Auto);
        let early = tracker
            .receipt("x1", ReceiptStatus::Delivered, "stat:DELIVRD")
            .expect("reported as it came");
        assert_eq!(early.carrier_message_id, "x1");
        let group = tracker.open("msg_1", 1);
        tracker.part_accepted(group, 0, "x1");
        tracker.accepted(group);
        assert_eq!(tracker.awaiting(), 0, "shutdown does not wait for it again");
        assert_eq!(tracker.receipt("x1", ReceiptStatus::Delivered, ""), None);
    }

    #[test]
    fn table_is_bounded_and_unknown_ids_pass_through() {
        let tracker = Tracker::new(2, ReceiptIdFormat::Auto);
        for n in 0..5 {
            let group = tracker.open(&format!("msg_{n}"), 1);
            tracker.part_accepted(group, 0, &n.to_string());
            tracker.accepted(group);
        }
        assert_eq!(tracker.awaiting(), 2);
        let unknown = tracker
            .receipt("0", ReceiptStatus::Delivered, "")
            .expect("passed through");
        assert_eq!(unknown.message_id, None);
        let known = tracker
            .receipt("4", ReceiptStatus::Delivered, "")
            .expect("known");
        assert_eq!(known.message_id.as_deref(), Some("msg_4"));
    }
}
