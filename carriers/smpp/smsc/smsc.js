// The test SMSC of verifyd: a real SMPP 3.4 peer built on the npm `smpp` package's server.
//
// Usage: node smsc.js '<json config>'   (NODE_PATH must hold the `smpp` package)
// Prints {"port":N} as its first stdout line, then one JSON line per event (bind, submit,
// enquire_link, unbind, receipt). Exits when its stdin closes, so it never outlives its test.
//
// Config (all optional):
//   port               listen port (0: any free port)
//   system_id, password   credentials binds must present (default verifyd / secret)
//   default            behaviour for destinations not listed (default "deliver")
//   destinations       { "<digits or +digits>": behaviour }
//       deliver        accept, receipt DELIVRD
//       fail           accept, receipt UNDELIV err:001
//       reject         refuse with ESME_RINVDSTADR (0x0B)
//       reject_source  refuse with ESME_RINVSRCADR (0x0A)
//       throttle       refuse with ESME_RTHROTTLED (0x58), always
//       throttle_once  ESME_RTHROTTLED on the first submit to it, then deliver
//       queue_full     refuse with ESME_RMSGQFUL (0x14)
//       nack           answer generic_nack
//       silent         read the submit_sm, never answer (a peer that took it and hung)
//       close          read the submit_sm and close the connection without answering
//       reject_later_parts  accept the first part of a long message (and single messages),
//                      refuse later parts with ESME_RSYSERR (0x08)
//       accept         accept, send no receipt
//   receipts           "both" (TLVs and text, default), "text" (text only), "tlv" (TLVs only)
//   receipt_delay_ms   delay before a receipt (default 20)
//   id_format          "decimal" (default) or "hex": ids in submit_sm_resp
//   id_zero_pad        pad the ids in submit_sm_resp with leading zeros to this many digits
//   receipt_id_format  "same" (default), "hex" or "decimal": ids in receipts (with
//                      id_format "hex" and receipt_id_format "decimal", the SMSC answers
//                      submit_sm_resp in hex and receipts in decimal, as many do)
//   ignore_enquire_link   never answer enquire_link
//   bench              answer every submit at once, no receipts, no submit lines
//   raw_after_bind     PDUs (hex) written as they are right after a successful bind, e.g. an
//                      unknown command or a malformed deliver_sm; the client's generic_nack
//                      answers show up as {"event":"generic_nack"} lines
'use strict';

const smpp = require('smpp');

// Keep short_message as raw octets so the events show exactly what went over the wire.
delete smpp.commands.submit_sm.params.short_message.filter;

const config = JSON.parse(process.argv[2] || '{}');
const systemId = config.system_id || 'verifyd';
const password = config.password === undefined ? 'secret' : config.password;
const receiptsMode = config.receipts || 'both';
const receiptDelay = config.receipt_delay_ms === undefined ? 20 : config.receipt_delay_ms;
const bench = !!config.bench;
const destinations = {};
for (const [key, value] of Object.entries(config.destinations || {})) {
  destinations[key.replace(/^\+/, '')] = value;
}
const throttledOnce = new Set();
let nextId = 1000000;
let submitCount = 0;
let sessionCount = 0;

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function formatId(n, format) {
  if (format === 'hex') return n.toString(16).toUpperCase();
  return String(n);
}

function submitId(n) {
  return formatId(n, config.id_format).padStart(config.id_zero_pad || 0, '0');
}

function stamp(date) {
  const p = (v) => String(v).padStart(2, '0');
  return p(date.getUTCFullYear() % 100) + p(date.getUTCMonth() + 1) + p(date.getUTCDate()) +
    p(date.getUTCHours()) + p(date.getUTCMinutes());
}

function gsmDecode(buffer) {
  return smpp.gsmCoder.decode(buffer, 0x00);
}

function decodeText(pdu, octets) {
  if (pdu.data_coding === 0x08) {
    const swapped = Buffer.from(octets);
    swapped.swap16();
    return swapped.toString('utf16le');
  }
  return gsmDecode(octets);
}

const receivers = new Set();
// Receipts no receiving bind was up for, kept (as an SMSC stores them) and sent when the next
// receiving bind comes up.
const undelivered = [];

function deliverReceipt(target, receipt) {
  target.send(new smpp.PDU('deliver_sm', receipt.options));
  emit({ event: 'receipt', id: receipt.id, stat: receipt.stat });
}

function sendReceipt(session, pdu, numericId, delivered) {
  const receiptId = config.receipt_id_format === 'hex' || config.receipt_id_format === 'decimal'
    ? formatId(numericId, config.receipt_id_format)
    : formatId(numericId, config.id_format);
  const now = new Date();
  const stat = delivered ? 'DELIVRD' : 'UNDELIV';
  const err = delivered ? '000' : '001';
  const text = `id:${receiptId} sub:001 dlvrd:${delivered ? '001' : '000'} submit date:${stamp(now)} done date:${stamp(now)} stat:${stat} err:${err} text:`;
  const options = {
    source_addr_ton: pdu.dest_addr_ton,
    source_addr_npi: pdu.dest_addr_npi,
    source_addr: pdu.destination_addr,
    dest_addr_ton: pdu.source_addr_ton,
    dest_addr_npi: pdu.source_addr_npi,
    destination_addr: pdu.source_addr,
    esm_class: 0x04,
    data_coding: 0,
    short_message: receiptsMode === 'tlv' ? Buffer.alloc(0) : Buffer.from(text, 'ascii'),
  };
  if (receiptsMode !== 'text') {
    options.receipted_message_id = receiptId;
    options.message_state = delivered ? 2 : 5;
  }
  setTimeout(() => {
    let target = receivers.has(session) ? session : null;
    if (!target) {
      for (const candidate of receivers) {
        target = candidate;
        break;
      }
    }
    const receipt = { options, id: receiptId, stat };
    if (!target) {
      emit({ event: 'receipt_kept', id: receiptId });
      undelivered.push(receipt);
      return;
    }
    deliverReceipt(target, receipt);
  }, receiptDelay);
}

function udhOf(pdu, octets) {
  if ((pdu.esm_class & 0x40) && octets.length > 0 && octets[0] + 1 <= octets.length) {
    return { udh: octets.slice(0, octets[0] + 1), body: octets.slice(octets[0] + 1) };
  }
  return { udh: null, body: octets };
}

function onSubmit(session, pdu) {
  submitCount += 1;
  const octets = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
  if (bench) {
    session.send(pdu.response({ message_id: String(nextId++) }));
    return;
  }
  const destination = pdu.destination_addr;
  let behaviour = destinations[destination] || config.default || 'deliver';
  if (behaviour === 'throttle_once') {
    if (throttledOnce.has(destination)) {
      behaviour = 'deliver';
    } else {
      throttledOnce.add(destination);
      behaviour = 'throttle';
    }
  }
  const { udh, body } = udhOf(pdu, octets);
  const tlvs = {};
  for (const key of Object.keys(pdu)) {
    if (/^\d+$/.test(key) && Buffer.isBuffer(pdu[key])) {
      tlvs['0x' + Number(key).toString(16).padStart(4, '0')] = pdu[key].toString('hex');
    }
  }
  const event = {
    event: 'submit',
    system_id: session.systemId,
    session: session.number,
    sequence_number: pdu.sequence_number,
    destination,
    dest_ton: pdu.dest_addr_ton,
    dest_npi: pdu.dest_addr_npi,
    source: pdu.source_addr,
    source_ton: pdu.source_addr_ton,
    source_npi: pdu.source_addr_npi,
    data_coding: pdu.data_coding,
    esm_class: pdu.esm_class,
    registered_delivery: pdu.registered_delivery,
    udh: udh ? udh.toString('hex') : null,
    short_message_hex: octets.toString('hex'),
    text: decodeText(pdu, body),
    tlvs,
    behaviour,
    status: 0,
    message_id: null,
  };
  const refuse = (status) => {
    event.status = status;
    emit(event);
    session.send(pdu.response({ command_status: status }));
  };
  switch (behaviour) {
    case 'reject':
      return refuse(smpp.ESME_RINVDSTADR);
    case 'reject_source':
      return refuse(smpp.ESME_RINVSRCADR);
    case 'throttle':
      return refuse(smpp.ESME_RTHROTTLED);
    case 'queue_full':
      return refuse(smpp.ESME_RMSGQFUL);
    case 'nack':
      event.status = -1;
      emit(event);
      session.send(new smpp.PDU('generic_nack', {
        sequence_number: pdu.sequence_number,
        command_status: smpp.ESME_RSYSERR,
      }));
      return;
    case 'silent':
      event.status = -2;
      emit(event);
      return;
    case 'close':
      event.status = -3;
      emit(event);
      session.close();
      return;
    case 'reject_later_parts':
      if (udh && udh.length >= 6 && udh[udh.length - 1] > 1) {
        return refuse(smpp.ESME_RSYSERR);
      }
      break;
    default:
      break;
  }
  const numericId = nextId++;
  const messageId = submitId(numericId);
  event.message_id = messageId;
  emit(event);
  session.send(pdu.response({ message_id: messageId }));
  if (behaviour === 'deliver' || behaviour === 'fail') {
    if (pdu.registered_delivery & 0x01) {
      sendReceipt(session, pdu, numericId, behaviour === 'deliver');
    }
  }
}

const server = smpp.createServer((session) => {
  sessionCount += 1;
  session.number = sessionCount;
  session.on('error', () => {});
  session.on('close', () => receivers.delete(session));
  const onBind = (command, receives, submits) => (pdu) => {
    const ok = pdu.system_id === systemId && pdu.password === password;
    emit({ event: 'bind', command, system_id: pdu.system_id, session: session.number, ok });
    if (!ok) {
      session.send(pdu.response({
        command_status: pdu.system_id === systemId ? smpp.ESME_RINVPASWD : smpp.ESME_RINVSYSID,
      }));
      return;
    }
    session.systemId = pdu.system_id;
    session.receives = receives;
    session.submits = submits;
    if (receives) receivers.add(session);
    session.send(pdu.response({ system_id: 'testsmsc' }));
    if (receives) {
      for (const receipt of undelivered.splice(0)) deliverReceipt(session, receipt);
    }
    for (const hex of config.raw_after_bind || []) {
      session.socket.write(Buffer.from(hex, 'hex'));
    }
  };
  session.on('bind_transceiver', onBind('bind_transceiver', true, true));
  session.on('bind_transmitter', onBind('bind_transmitter', false, true));
  session.on('bind_receiver', onBind('bind_receiver', true, false));
  session.on('submit_sm', (pdu) => {
    if (!session.submits) {
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    onSubmit(session, pdu);
  });
  session.on('enquire_link', (pdu) => {
    if (!bench) emit({ event: 'enquire_link', system_id: session.systemId || null });
    if (!config.ignore_enquire_link) session.send(pdu.response());
  });
  session.on('deliver_sm_resp', () => {});
  session.on('generic_nack', (pdu) => {
    emit({
      event: 'generic_nack',
      sequence_number: pdu.sequence_number,
      command_status: pdu.command_status,
    });
  });
  session.on('unbind', (pdu) => {
    emit({ event: 'unbind', system_id: session.systemId || null });
    session.send(pdu.response());
    session.close();
  });
  session.on('unknown', (pdu) => {
    session.send(pdu.response());
  });
});

server.on('error', (error) => {
  process.stderr.write(`test SMSC: ${error.message}\n`);
  process.exit(2);
});

server.listen(config.port || 0, '127.0.0.1', () => {
  emit({ port: server.address().port });
});

process.on('SIGUSR2', () => emit({ event: 'stats', submits: submitCount }));
process.stdin.on('data', () => {});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
