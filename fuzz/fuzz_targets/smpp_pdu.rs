//! The SMPP PDU decoder: bytes from the SMSC, framed by `PduCodec` as they arrive in pieces,
//! each frame's body read by the decoders the session uses for its command (and by every other
//! decoder too), deliver_sm receipts read as the session reads them.
//!
//! Input: the first byte sets the size of the pieces the stream arrives in, the rest is the
//! stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use verify_carrier_smpp::pdu::{
    self, Bind, Frame, MAX_PDU_LEN, PduCodec, ShortMessage, command, decode_bind_resp,
    decode_submit_sm_resp,
};
use verify_carrier_smpp::receipt::parse_deliver_sm;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut codec = PduCodec;
    let mut buffer = BytesMut::new();
    'stream: for chunk in stream.chunks(piece) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => read_frame(&frame),
                Ok(None) => break,
                // The session drops the connection on a framing error.
                Err(_) => break 'stream,
            }
            // A length field never makes the codec reserve more than one PDU.
            assert!(
                buffer.capacity() <= 2 * MAX_PDU_LEN + stream.len(),
                "codec buffer grew to {} bytes",
                buffer.capacity()
            );
        }
    }
});

fn read_frame(frame: &Frame) {
    assert!(frame.body.len() + pdu::HEADER_LEN <= MAX_PDU_LEN);
    let body = &frame.body[..];
    match frame.command_id {
        command::SUBMIT_SM_RESP => {
            let _ = decode_submit_sm_resp(body);
        }
        command::BIND_RECEIVER_RESP
        | command::BIND_TRANSMITTER_RESP
        | command::BIND_TRANSCEIVER_RESP => {
            let _ = decode_bind_resp(body);
        }
        command::BIND_RECEIVER | command::BIND_TRANSMITTER | command::BIND_TRANSCEIVER => {
            if let Ok(bind) = Bind::decode(frame.command_id, body) {
                round_trip_bind(&bind);
            }
        }
        command::DELIVER_SM | command::SUBMIT_SM => {
            if let Ok(sm) = ShortMessage::decode(body) {
                round_trip_short_message(&sm, frame.command_id);
                if sm.esm_class & 0x04 != 0 {
                    let _ = parse_deliver_sm(&sm);
                }
            }
        }
        _ => {}
    }
    // A peer may send any body under any command id: no decoder may panic on it.
    let _ = decode_submit_sm_resp(body);
    let _ = decode_bind_resp(body);
    let _ = Bind::decode(command::BIND_TRANSCEIVER, body);
    if let Ok(sm) = ShortMessage::decode(body) {
        let _ = parse_deliver_sm(&sm);
    }
}

/// What was read, written again, reads the same (when it can be written: lossy UTF-8 can make a
/// field longer than SMPP allows).
fn round_trip_short_message(sm: &ShortMessage, command_id: u32) {
    let Ok(encoded) = sm.encode(command_id, 7) else {
        return;
    };
    let frame = PduCodec
        .decode(&mut BytesMut::from(&encoded[..]))
        .expect("an encoded PDU frames")
        .expect("an encoded PDU is whole");
    assert_eq!(frame.command_id, command_id);
    assert_eq!(frame.sequence, 7);
    let again = ShortMessage::decode(&frame.body).expect("an encoded short message decodes");
    assert_eq!(&again, sm);
}

fn round_trip_bind(bind: &Bind) {
    let Ok(encoded) = bind.encode(3) else {
        return;
    };
    let frame = PduCodec
        .decode(&mut BytesMut::from(&encoded[..]))
        .expect("an encoded bind frames")
        .expect("an encoded bind is whole");
    let again = Bind::decode(frame.command_id, &frame.body).expect("an encoded bind decodes");
    assert_eq!(&again, bind);
}
