//! SMPP 3.4 protocol data units: the 16-byte header, the bodies this client sends and reads,
//! C-octet strings, TLVs, and a `tokio_util` codec that frames PDUs on a byte stream.
//!
//! Decoding never panics: every read is bounds-checked and a bad body is a [`PduError`], which
//! the session answers with `generic_nack`.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Length of the PDU header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;

/// Largest PDU accepted from a peer; SMSCs send a few hundred bytes.
pub const MAX_PDU_LEN: usize = 64 * 1024;

/// The SMPP 3.4 interface version sent in binds.
pub const INTERFACE_VERSION_34: u8 = 0x34;

/// Command ids (SMPP 3.4 section 5.1.2.1).
pub mod command {
    /// generic_nack.
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    /// bind_receiver.
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    /// bind_receiver_resp.
    pub const BIND_RECEIVER_RESP: u32 = 0x8000_0001;
    /// bind_transmitter.
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    /// bind_transmitter_resp.
    pub const BIND_TRANSMITTER_RESP: u32 = 0x8000_0002;
    /// submit_sm.
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    /// submit_sm_resp.
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    /// deliver_sm.
    pub const DELIVER_SM: u32 = 0x0000_0005;
    /// deliver_sm_resp.
    pub const DELIVER_SM_RESP: u32 = 0x8000_0005;
    /// unbind.
    pub const UNBIND: u32 = 0x0000_0006;
    /// unbind_resp.
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    /// bind_transceiver.
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    /// bind_transceiver_resp.
    pub const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
    /// enquire_link.
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    /// enquire_link_resp.
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;

    /// Whether `id` is a response (bit 31 set).
    pub fn is_response(id: u32) -> bool {
        id & 0x8000_0000 != 0
    }
}

/// Command status values (SMPP 3.4 section 5.1.3) this client acts on.
pub mod status {
    /// No error.
    pub const ESME_ROK: u32 = 0x0000_0000;
    /// Message length is invalid.
    pub const ESME_RINVMSGLEN: u32 = 0x0000_0001;
    /// Command length is invalid.
    pub const ESME_RINVCMDLEN: u32 = 0x0000_0002;
    /// Invalid command id.
    pub const ESME_RINVCMDID: u32 = 0x0000_0003;
    /// System error.
    pub const ESME_RSYSERR: u32 = 0x0000_0008;
    /// Invalid source address.
    pub const ESME_RINVSRCADR: u32 = 0x0000_000A;
    /// Invalid destination address.
    pub const ESME_RINVDSTADR: u32 = 0x0000_000B;
    /// Bind failed.
    pub const ESME_RBINDFAIL: u32 = 0x0000_000D;
    /// Invalid password.
    pub const ESME_RINVPASWD: u32 = 0x0000_000E;
    /// Invalid system id.
    pub const ESME_RINVSYSID: u32 = 0x0000_000F;
    /// Message queue full.
    pub const ESME_RMSGQFUL: u32 = 0x0000_0014;
    /// Throttling error: the ESME exceeded its allowed message limits.
    pub const ESME_RTHROTTLED: u32 = 0x0000_0058;
    /// ESME receiver temporary application error: the SMSC should retry the deliver_sm.
    pub const ESME_RX_T_APPN: u32 = 0x0000_0064;
}

/// The name of a command status from the SMPP 3.4 table, or `UNKNOWN`.
pub fn status_name(code: u32) -> &'static str {
    match code {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x06 => "ESME_RINVPRTFLG",
        0x07 => "ESME_RINVREGDLVFLG",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x11 => "ESME_RCANCELFAIL",
        0x13 => "ESME_RREPLACEFAIL",
        0x14 => "ESME_RMSGQFUL",
        0x15 => "ESME_RINVSERTYP",
        0x33 => "ESME_RINVNUMDESTS",
        0x34 => "ESME_RINVDLNAME",
        0x40 => "ESME_RINVDESTFLAG",
        0x42 => "ESME_RINVSUBREP",
        0x43 => "ESME_RINVESMCLASS",
        0x44 => "ESME_RCNTSUBDL",
        0x45 => "ESME_RSUBMITFAIL",
        0x48 => "ESME_RINVSRCTON",
        0x49 => "ESME_RINVSRCNPI",
        0x50 => "ESME_RINVDSTTON",
        0x51 => "ESME_RINVDSTNPI",
        0x53 => "ESME_RINVSYSTYP",
        0x54 => "ESME_RINVREPFLAG",
        0x55 => "ESME_RINVNUMMSGS",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x63 => "ESME_RINVDFTMSGID",
        0x64 => "ESME_RX_T_APPN",
        0x65 => "ESME_RX_P_APPN",
        0x66 => "ESME_RX_R_APPN",
        0x67 => "ESME_RQUERYFAIL",
        0xC0 => "ESME_RINVOPTPARSTREAM",
        0xC1 => "ESME_ROPTPARNOTALLWD",
        0xC2 => "ESME_RINVPARLEN",
        0xC3 => "ESME_RMISSINGOPTPARAM",
        0xC4 => "ESME_RINVOPTPARAMVAL",
        0xFE => "ESME_RDELIVERYFAILURE",
        0xFF => "ESME_RUNKNOWNERR",
        _ => "UNKNOWN",
    }
}

/// TLV tags (SMPP 3.4 section 5.3.2) this client reads.
pub mod tag {
    /// receipted_message_id (C-octet string).
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    /// network_error_code (3 octets: type, code).
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    /// message_payload (octets).
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    /// message_state (1 octet).
    pub const MESSAGE_STATE: u16 = 0x0427;
}

/// Why bytes could not be read as a PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduError {
    /// The body ended inside `field`.
    Truncated(&'static str),
    /// The C-octet string `field` has no terminating NUL within its maximum length.
    UnterminatedString(&'static str),
    /// `field` is longer than SMPP allows.
    TooLong(&'static str),
    /// A length field that cannot be right (command_length below 16 or above the maximum).
    BadLength(usize),
}

impl fmt::Display for PduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PduError::Truncated(field) => write!(f, "PDU truncated in {field}"),
            PduError::UnterminatedString(field) => {
                write!(f, "C-octet string {field} is not NUL-terminated")
            }
            PduError::TooLong(field) => write!(f, "{field} is too long for SMPP"),
            PduError::BadLength(length) => write!(f, "invalid command_length {length}"),
        }
    }
}

impl std::error::Error for PduError {}

/// One framed PDU: the header fields and the undecoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// command_id.
    pub command_id: u32,
    /// command_status.
    pub status: u32,
    /// sequence_number.
    pub sequence: u32,
    /// Everything after the header.
    pub body: Bytes,
}

/// Bounds-checked reader of a PDU body.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self, field: &'static str) -> Result<u8, PduError> {
        let (&first, rest) = self.bytes.split_first().ok_or(PduError::Truncated(field))?;
        self.bytes = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PduError> {
        if self.bytes.len() < n {
            return Err(PduError::Truncated(field));
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, PduError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A C-octet string of at most `max` octets including its NUL.
    fn cstring(&mut self, max: usize, field: &'static str) -> Result<String, PduError> {
        let limit = self.bytes.len().min(max);
        let Some(end) = self.bytes[..limit].iter().position(|&b| b == 0) else {
            return Err(if self.bytes.len() < max {
                PduError::Truncated(field)
            } else {
                PduError::UnterminatedString(field)
            });
        };
        let text = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes = &self.bytes[end + 1..];
        Ok(text)
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

fn put_cstring(
    out: &mut BytesMut,
    value: &str,
    max: usize,
    field: &'static str,
) -> Result<(), PduError> {
    if value.len() + 1 > max || value.as_bytes().contains(&0) {
        return Err(PduError::TooLong(field));
    }
    out.put_slice(value.as_bytes());
    out.put_u8(0);
    Ok(())
}

/// Writes a whole PDU (header and the body `write_body` produces) and returns it.
pub fn encode_pdu(
    command_id: u32,
    status: u32,
    sequence: u32,
    write_body: impl FnOnce(&mut BytesMut) -> Result<(), PduError>,
) -> Result<Bytes, PduError> {
    let mut out = BytesMut::with_capacity(64);
    out.put_u32(0);
    out.put_u32(command_id);
    out.put_u32(status);
    out.put_u32(sequence);
    write_body(&mut out)?;
    let length = u32::try_from(out.len()).map_err(|_| PduError::BadLength(out.len()))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out.freeze())
}

/// A PDU with no body (enquire_link, unbind, their responses, generic_nack, deliver_sm_resp's
/// header-only form).
pub fn header_only(command_id: u32, status: u32, sequence: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN);
    out.put_u32(HEADER_LEN as u32);
    out.put_u32(command_id);
    out.put_u32(status);
    out.put_u32(sequence);
    out.freeze()
}

/// deliver_sm_resp: the header and an empty message_id (SMPP 3.4 section 4.6.2).
pub fn deliver_sm_resp(sequence: u32) -> Bytes {
    deliver_sm_resp_with_status(sequence, status::ESME_ROK)
}

/// deliver_sm_resp with `command_status` (e.g. [`status::ESME_RX_T_APPN`]: refused for now,
/// the SMSC should send it again later).
pub fn deliver_sm_resp_with_status(sequence: u32, command_status: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + 1);
    out.put_u32(HEADER_LEN as u32 + 1);
    out.put_u32(command::DELIVER_SM_RESP);
    out.put_u32(command_status);
    out.put_u32(sequence);
    out.put_u8(0);
    out.freeze()
}

/// A bind request (bind_transmitter, bind_receiver or bind_transceiver body, section 4.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Bind {
    /// Which bind: one of the `command::BIND_*` request ids.
    pub command_id: u32,
    /// system_id (max 15 characters).
    pub system_id: String,
    /// password (max 8 characters).
    pub password: String,
    /// system_type (max 12 characters).
    pub system_type: String,
    /// interface_version, 0x34.
    pub interface_version: u8,
    /// addr_ton.
    pub addr_ton: u8,
    /// addr_npi.
    pub addr_npi: u8,
    /// address_range (max 40 characters).
    pub address_range: String,
}

impl fmt::Debug for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bind")
            .field("command_id", &self.command_id)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .finish_non_exhaustive()
    }
}

impl Bind {
    /// The encoded PDU.
    pub fn encode(&self, sequence: u32) -> Result<Bytes, PduError> {
        encode_pdu(self.command_id, 0, sequence, |out| {
            put_cstring(out, &self.system_id, 16, "system_id")?;
            put_cstring(out, &self.password, 9, "password")?;
            put_cstring(out, &self.system_type, 13, "system_type")?;
            out.put_u8(self.interface_version);
            out.put_u8(self.addr_ton);
            out.put_u8(self.addr_npi);
            put_cstring(out, &self.address_range, 41, "address_range")
        })
    }

    /// Reads a bind body (what an SMSC does; used by tests).
    pub fn decode(command_id: u32, body: &[u8]) -> Result<Bind, PduError> {
        let mut r = Reader { bytes: body };
        Ok(Bind {
            command_id,
            system_id: r.cstring(16, "system_id")?,
            password: r.cstring(9, "password")?,
            system_type: r.cstring(13, "system_type")?,
            interface_version: r.u8("interface_version")?,
            addr_ton: r.u8("addr_ton")?,
            addr_npi: r.u8("addr_npi")?,
            address_range: r.cstring(41, "address_range")?,
        })
    }
}

/// Reads the system_id of a bind response (absent when the bind was refused).
pub fn decode_bind_resp(body: &[u8]) -> Result<String, PduError> {
    if body.is_empty() {
        return Ok(String::new());
    }
    Reader { bytes: body }.cstring(16, "system_id")
}

/// Reads the message_id of a submit_sm_resp (absent when the submit was refused).
pub fn decode_submit_sm_resp(body: &[u8]) -> Result<String, PduError> {
    if body.is_empty() {
        return Ok(String::new());
    }
    Reader { bytes: body }.cstring(65, "message_id")
}

/// A submit_sm_resp (what an SMSC sends; used by tests and the benchmark's baseline).
pub fn encode_submit_sm_resp(sequence: u32, message_id: &str) -> Result<Bytes, PduError> {
    encode_pdu(command::SUBMIT_SM_RESP, 0, sequence, |out| {
        put_cstring(out, message_id, 65, "message_id")
    })
}

/// An SME address: type of number, numbering plan, digits or alphanumeric text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// Type of number (TON): 1 international, 3 network specific, 5 alphanumeric.
    pub ton: u8,
    /// Numbering plan indicator (NPI): 0 unknown, 1 ISDN/E.164.
    pub npi: u8,
    /// The address (max 20 characters).
    pub addr: String,
}

/// A tagged optional parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// The tag, e.g. 0x1400.
    pub tag: u16,
    /// The value octets.
    pub value: Bytes,
}

/// The body shared by submit_sm and deliver_sm (sections 4.4.1 and 4.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShortMessage {
    /// service_type (max 5 characters).
    pub service_type: String,
    /// source_addr_ton / npi / source_addr.
    pub source: Address,
    /// dest_addr_ton / npi / destination_addr.
    pub destination: Address,
    /// esm_class: 0x40 UDH indicator; 0x04 in deliver_sm marks a delivery receipt.
    pub esm_class: u8,
    /// protocol_id.
    pub protocol_id: u8,
    /// priority_flag.
    pub priority_flag: u8,
    /// schedule_delivery_time (empty: now).
    pub schedule_delivery_time: String,
    /// validity_period (empty: SMSC default).
    pub validity_period: String,
    /// registered_delivery: 1 asks for a receipt on final outcome.
    pub registered_delivery: u8,
    /// replace_if_present_flag.
    pub replace_if_present: u8,
    /// data_coding: 0x00 SMSC default (GSM 03.38), 0x08 UCS-2.
    pub data_coding: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// short_message octets (UDH included when esm_class has 0x40), at most 254.
    pub short_message: Bytes,
    /// Optional parameters.
    pub tlvs: Vec<Tlv>,
}

impl ShortMessage {
    /// Encodes this body as a PDU of `command_id` (submit_sm or deliver_sm).
    pub fn encode(&self, command_id: u32, sequence: u32) -> Result<Bytes, PduError> {
        encode_pdu(command_id, 0, sequence, |out| self.write_body(out))
    }

    fn write_body(&self, out: &mut BytesMut) -> Result<(), PduError> {
        put_cstring(out, &self.service_type, 6, "service_type")?;
        out.put_u8(self.source.ton);
        out.put_u8(self.source.npi);
        put_cstring(out, &self.source.addr, 21, "source_addr")?;
        out.put_u8(self.destination.ton);
        out.put_u8(self.destination.npi);
        put_cstring(out, &self.destination.addr, 21, "destination_addr")?;
        out.put_u8(self.esm_class);
        out.put_u8(self.protocol_id);
        out.put_u8(self.priority_flag);
        put_cstring(
            out,
            &self.schedule_delivery_time,
            17,
            "schedule_delivery_time",
        )?;
        put_cstring(out, &self.validity_period, 17, "validity_period")?;
        out.put_u8(self.registered_delivery);
        out.put_u8(self.replace_if_present);
        out.put_u8(self.data_coding);
        out.put_u8(self.sm_default_msg_id);
        let sm_length = u8::try_from(self.short_message.len())
            .map_err(|_| PduError::TooLong("short_message"))?;
        if sm_length == 255 {
            return Err(PduError::TooLong("short_message"));
        }
        out.put_u8(sm_length);
        out.put_slice(&self.short_message);
        for tlv in &self.tlvs {
            let length =
                u16::try_from(tlv.value.len()).map_err(|_| PduError::TooLong("TLV value"))?;
            out.put_u16(tlv.tag);
            out.put_u16(length);
            out.put_slice(&tlv.value);
        }
        Ok(())
    }

    /// Reads a submit_sm or deliver_sm body.
    pub fn decode(body: &[u8]) -> Result<ShortMessage, PduError> {
        let mut r = Reader { bytes: body };
        let service_type = r.cstring(6, "service_type")?;
        let source = Address {
            ton: r.u8("source_addr_ton")?,
            npi: r.u8("source_addr_npi")?,
            addr: r.cstring(21, "source_addr")?,
        };
        let destination = Address {
            ton: r.u8("dest_addr_ton")?,
            npi: r.u8("dest_addr_npi")?,
            addr: r.cstring(21, "destination_addr")?,
        };
        let esm_class = r.u8("esm_class")?;
        let protocol_id = r.u8("protocol_id")?;
        let priority_flag = r.u8("priority_flag")?;
        let schedule_delivery_time = r.cstring(17, "schedule_delivery_time")?;
        let validity_period = r.cstring(17, "validity_period")?;
        let registered_delivery = r.u8("registered_delivery")?;
        let replace_if_present = r.u8("replace_if_present_flag")?;
        let data_coding = r.u8("data_coding")?;
        let sm_default_msg_id = r.u8("sm_default_msg_id")?;
        let sm_length = r.u8("sm_length")? as usize;
        let short_message = Bytes::copy_from_slice(r.take(sm_length, "short_message")?);
        let mut tlvs = Vec::new();
        while !r.is_empty() {
            let tag = r.u16("TLV tag")?;
            let length = r.u16("TLV length")? as usize;
            let value = Bytes::copy_from_slice(r.take(length, "TLV value")?);
            tlvs.push(Tlv { tag, value });
        }
        Ok(ShortMessage {
            service_type,
            source,
            destination,
            esm_class,
            protocol_id,
            priority_flag,
            schedule_delivery_time,
            validity_period,
            registered_delivery,
            replace_if_present,
            data_coding,
            sm_default_msg_id,
            short_message,
            tlvs,
        })
    }

    /// The value of the first TLV with `tag`.
    pub fn tlv(&self, tag: u16) -> Option<&Bytes> {
        self.tlvs.iter().find(|t| t.tag == tag).map(|t| &t.value)
    }
}

/// Frames PDUs on a byte stream: reads command_length, waits for the whole PDU, splits off the
/// header. Writes already-encoded PDUs as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct PduCodec;

impl Decoder for PduCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if !(HEADER_LEN..=MAX_PDU_LEN).contains(&length) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                PduError::BadLength(length),
            ));
        }
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        let mut pdu = src.split_to(length);
        pdu.advance(4);
        let command_id = pdu.get_u32();
        let status = pdu.get_u32();
        let sequence = pdu.get_u32();
        Ok(Some(Frame {
            command_id,
            status,
            sequence,
            body: pdu.freeze(),
        }))
    }
}

impl Encoder<Bytes> for PduCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn enquire_link_is_a_bare_header() {
        // SMPP 3.4 section 4.11.1: command_length 16, command_id 0x00000015, status 0.
        assert_eq!(
            hex(&header_only(command::ENQUIRE_LINK, 0, 1)),
            "00000010000000150000000000000001"
        );
        assert_eq!(
            hex(&header_only(
                command::GENERIC_NACK,
                status::ESME_RINVCMDID,
                7
            )),
            "00000010800000000000000300000007"
        );
    }

    #[test]
    fn bind_transmitter_matches_the_spec_layout() {
        // Section 4.1.1: system_id, password, system_type (C-octet strings), interface_version,
        // addr_ton, addr_npi, address_range.
        let bind = Bind {
            command_id: command::BIND_TRANSMITTER,
            system_id: "SMPP3TEST".into(),
            password: "secret08".into(),
            system_type: "SUBMIT1".into(),
            interface_version: INTERFACE_VERSION_34,
            addr_ton: 1,
            addr_npi: 1,
            address_range: String::new(),
        };
        let pdu = bind.encode(1).expect("encodes");
        let expected = concat!(
            "0000002f", // 47 octets
            "00000002",
            "00000000",
            "00000001",
            "534d50503354455354",
            "00", // SMPP3TEST
            "7365637265743038",
            "00", // secret08
            "5355424d495431",
            "00", // SUBMIT1
            "34",
            "01",
            "01",
            "00",
        );
        assert_eq!(hex(&pdu), expected);
        let frame = PduCodec
            .decode(&mut BytesMut::from(&pdu[..]))
            .expect("frames")
            .expect("whole");
        assert_eq!(
            Bind::decode(frame.command_id, &frame.body).expect("decodes"),
            bind
        );
        assert!(!format!("{bind:?}").contains("secret08"));
    }

    #[test]
    fn bind_refuses_a_password_longer_than_eight() {
        let bind = Bind {
            command_id: command::BIND_TRANSCEIVER,
            system_id: "id".into(),
            password: "ninechars".into(),
            system_type: String::new(),
            interface_version: INTERFACE_VERSION_34,
            addr_ton: 0,
            addr_npi: 0,
            address_range: String::new(),
        };
        assert_eq!(bind.encode(1), Err(PduError::TooLong("password")));
    }

    #[test]
    fn submit_sm_matches_the_spec_layout_and_round_trips() {
        let sm = ShortMessage {
            source: Address {
                ton: 5,
                npi: 0,
                addr: "Verify".into(),
            },
            destination: Address {
                ton: 1,
                npi: 1,
                addr: "447700900123".into(),
            },
            registered_delivery: 1,
            short_message: Bytes::from_static(b"Hi"),
            tlvs: vec![Tlv {
                tag: 0x1400,
                value: Bytes::from_static(b"12\0"),
            }],
            ..ShortMessage::default()
        };
        let pdu = sm.encode(command::SUBMIT_SM, 2).expect("encodes");
        let expected = concat!(
            "0000003c",
            "00000004",
            "00000000",
            "00000002",
            "00", // service_type ""
            "05",
            "00",
            "56657269667900", // source TON 5, NPI 0, "Verify"
            "01",
            "01",
            "34343737303039303031323300", // dest TON 1, NPI 1
            "00",
            "00",
            "00", // esm_class, protocol_id, priority_flag
            "00",
            "00", // schedule_delivery_time, validity_period
            "01",
            "00",
            "00",
            "00", // registered_delivery, replace, data_coding, default id
            "02",
            "4869", // sm_length, short_message
            "1400",
            "0003",
            "313200", // TLV
        );
        assert_eq!(hex(&pdu), expected);
        let frame = PduCodec
            .decode(&mut BytesMut::from(&pdu[..]))
            .expect("frames")
            .expect("whole");
        assert_eq!(frame.command_id, command::SUBMIT_SM);
        assert_eq!(frame.sequence, 2);
        assert_eq!(ShortMessage::decode(&frame.body).expect("decodes"), sm);
    }

    #[test]
    fn codec_waits_for_whole_pdus_and_refuses_bad_lengths() {
        let pdu = encode_submit_sm_resp(9, "abc123").expect("encodes");
        let mut buffer = BytesMut::from(&pdu[..10]);
        assert_eq!(PduCodec.decode(&mut buffer).expect("no error"), None);
        buffer.extend_from_slice(&pdu[10..]);
        buffer.extend_from_slice(&header_only(command::ENQUIRE_LINK, 0, 10));
        let first = PduCodec.decode(&mut buffer).expect("ok").expect("whole");
        assert_eq!(first.command_id, command::SUBMIT_SM_RESP);
        assert_eq!(decode_submit_sm_resp(&first.body).expect("id"), "abc123");
        let second = PduCodec.decode(&mut buffer).expect("ok").expect("whole");
        assert_eq!(
            (second.command_id, second.sequence),
            (command::ENQUIRE_LINK, 10)
        );
        let mut bad = BytesMut::from(&[0u8, 0, 0, 8, 0, 0, 0, 0][..]);
        assert!(PduCodec.decode(&mut bad).is_err());
        let mut huge = BytesMut::from(&[0x7fu8, 0, 0, 0][..]);
        assert!(PduCodec.decode(&mut huge).is_err());
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(ShortMessage::decode(&[]).is_err());
        assert!(ShortMessage::decode(b"abc").is_err());
        // A string with no NUL within its maximum.
        assert_eq!(
            decode_submit_sm_resp(&[b'x'; 70]),
            Err(PduError::UnterminatedString("message_id"))
        );
        // sm_length beyond the body.
        let mut body = vec![0u8, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 200];
        body.extend_from_slice(b"short");
        assert_eq!(
            ShortMessage::decode(&body),
            Err(PduError::Truncated("short_message"))
        );
        // A TLV whose length runs past the end.
        let mut body = vec![0u8, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        body.extend_from_slice(&[0x04, 0x27, 0x00, 0x05, 0x02]);
        assert_eq!(
            ShortMessage::decode(&body),
            Err(PduError::Truncated("TLV value"))
        );
        for n in 0..40 {
            let noise: Vec<u8> = (0..n).map(|i| (i * 37 % 251) as u8).collect();
            let _ = ShortMessage::decode(&noise);
            let _ = Bind::decode(command::BIND_TRANSCEIVER, &noise);
        }
    }

    #[test]
    fn status_names_come_from_the_spec_table() {
        assert_eq!(status_name(0x58), "ESME_RTHROTTLED");
        assert_eq!(status_name(0x14), "ESME_RMSGQFUL");
        assert_eq!(status_name(0x0B), "ESME_RINVDSTADR");
        assert_eq!(status_name(0x1234), "UNKNOWN");
    }
}
