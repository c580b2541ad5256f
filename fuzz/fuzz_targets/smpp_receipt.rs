//! The SMPP receipt parser: `parse_deliver_sm` and the `id:… stat:… err:…` text parser, then
//! the id mapping of every `receipt_id_format` and the receipt table the session hands the
//! result to.
//!
//! Input: a deliver_sm body (read with `ShortMessage::decode`, TLVs included, as the session
//! does) or receipt text. The same bytes are also read as the text alone, and as the
//! short_message and as the `message_payload` TLV of a receipt in GSM 03.38 and in UCS-2.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use verify_carrier::ReceiptStatus;
use verify_carrier_smpp::config::ReceiptIdFormat;
use verify_carrier_smpp::pdu::{ShortMessage, Tlv, tag};
use verify_carrier_smpp::receipt::{
    ParsedReceipt, ReceiptText, Tracker, map_receipt_id, parse_deliver_sm, parse_receipt_text,
};
use verify_carrier_smpp::text::{DATA_CODING_GSM, DATA_CODING_UCS2};

fn check_text(parsed: &ReceiptText) {
    for value in [&parsed.id, &parsed.stat, &parsed.err]
        .into_iter()
        .flatten()
    {
        assert!(!value.is_empty(), "an empty field was read: {parsed:?}");
        assert!(
            !value.chars().any(char::is_whitespace),
            "a field value with whitespace: {parsed:?}"
        );
    }
    if let Some(stat) = &parsed.stat {
        assert_eq!(stat, &stat.to_ascii_uppercase());
    }
}

/// Hands a receipt to a table that awaits a two-part message whose first part submit_sm_resp
/// gave as the receipt's id spelled another way (as each format maps it) and a one-part
/// message with the receipt's id as it is, as the session does.
fn track(parsed: &ParsedReceipt) {
    assert!(
        !parsed.id.is_empty(),
        "a receipt with an empty id: {parsed:?}"
    );
    assert_eq!(parsed.detail, parsed.detail.trim());
    for format in [
        ReceiptIdFormat::Auto,
        ReceiptIdFormat::AsIs,
        ReceiptIdFormat::HexToDecimal,
        ReceiptIdFormat::DecimalToHex,
    ] {
        let ids = map_receipt_id(&parsed.id, format);
        assert!(!ids.is_empty());
        assert!(
            ids.contains(&parsed.id),
            "{format:?} left out the id as it is: {ids:?}"
        );
        let tracker = Tracker::new(2, format);
        let long = tracker.open("msg_long", 2);
        tracker.part_accepted(long, 0, &ids[0]);
        tracker.part_accepted(long, 1, "other-part");
        tracker.accepted(long);
        let short = tracker.open("msg_short", 1);
        tracker.part_accepted(short, 0, &parsed.id);
        tracker.accepted(short);
        let status = parsed.status.unwrap_or(ReceiptStatus::Failed);
        // A failure is always reported (it fails the whole message); a delivery that matched
        // the two-part message waits for the other part.
        let resolved = tracker.receipt(&parsed.id, status, &parsed.detail);
        if status == ReceiptStatus::Failed {
            assert!(resolved.is_some(), "a failure was not reported: {parsed:?}");
        }
        if let Some(resolved) = resolved {
            assert_eq!(resolved.status, status);
            assert_eq!(resolved.detail, parsed.detail);
        }
        assert!(tracker.awaiting() <= 2);
    }
}

fuzz_target!(|data: &[u8]| {
    check_text(&parse_receipt_text(&String::from_utf8_lossy(data)));

    if let Ok(sm) = ShortMessage::decode(data)
        && let Some(parsed) = parse_deliver_sm(&sm)
    {
        track(&parsed);
    }
    let octets = Bytes::copy_from_slice(data);
    for data_coding in [DATA_CODING_GSM, DATA_CODING_UCS2] {
        let in_text = ShortMessage {
            esm_class: 0x04,
            data_coding,
            short_message: octets.clone(),
            ..ShortMessage::default()
        };
        let in_payload = ShortMessage {
            esm_class: 0x04,
            data_coding,
            tlvs: vec![Tlv {
                tag: tag::MESSAGE_PAYLOAD,
                value: octets.clone(),
            }],
            ..ShortMessage::default()
        };
        for sm in [in_text, in_payload] {
            if let Some(parsed) = parse_deliver_sm(&sm) {
                track(&parsed);
            }
        }
    }
});
