#!/usr/bin/env node
// Local AMQP 1.0 stand-in for Azure Service Bus queues, for tests and demos.
//
// It speaks just enough of the Service Bus dialect for the azservicebus Go SDK
// (v1.11.0, go-amqp v1.7.0) to send, schedule, receive (PeekLock and
// ReceiveAndDelete), settle, renew locks, peek, defer and dead-letter messages.
// See README.md beside this file for the supported surface and its limits.
//
// Usage: node broker.js [--port N] [--admin-port M] [--queues JSON]
//                       [--max-message-size BYTES] [--log debug] [--no-stdin-watch]
// Environment equivalents: SB_BROKER_PORT, SB_BROKER_ADMIN_PORT, SB_BROKER_QUEUES,
// SB_BROKER_MAX_MESSAGE_SIZE, SB_BROKER_LOG, SB_BROKER_IGNORE_STDIN=1.
// Prints exactly one JSON line {"amqpPort":N,"adminPort":M} on stdout once both
// listeners are up. Exits when stdin closes (unless told not to) or on SIGTERM/SIGINT.
'use strict';

const crypto = require('crypto');
const http = require('http');
const rhea = require('rhea');

const types = rhea.types;
const rheaMessage = rhea.message;

// ---------------------------------------------------------------------------
// Configuration

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const key = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const next = () => (inline !== undefined ? inline : argv[++i]);
    switch (key) {
      case '--port': out.port = next(); break;
      case '--admin-port': out.adminPort = next(); break;
      case '--queues': out.queues = next(); break;
      case '--max-message-size': out.maxMessageSize = next(); break;
      case '--log': out.log = next(); break;
      case '--no-stdin-watch': out.noStdinWatch = true; break;
      case '-h': case '--help':
        process.stderr.write('usage: node broker.js [--port N] [--admin-port M] [--queues JSON] ' +
          '[--max-message-size BYTES] [--log debug] [--no-stdin-watch]\n');
        process.exit(0);
        break;
      default:
        fatal(`unknown argument ${a}`);
    }
  }
  return out;
}

function fatal(msg) {
  process.stderr.write(`sb-broker: ${msg}\n`);
  process.exit(2);
}

function intOption(value, name, dflt) {
  if (value === undefined || value === '') return dflt;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) fatal(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

const args = parseArgs(process.argv.slice(2));
const env = process.env;
const AMQP_PORT = intOption(args.port !== undefined ? args.port : env.SB_BROKER_PORT, 'port', 5672);
const ADMIN_PORT = intOption(args.adminPort !== undefined ? args.adminPort : env.SB_BROKER_ADMIN_PORT, 'admin port', 0);
// 256 KiB is the Standard tier's limit; the SDK sizes its batches from it.
const MAX_MESSAGE_SIZE = intOption(args.maxMessageSize !== undefined ? args.maxMessageSize : env.SB_BROKER_MAX_MESSAGE_SIZE,
  'max message size', 256 * 1024);
const DEBUG = /^(debug|trace|1|true)$/i.test(args.log || env.SB_BROKER_LOG || '');
const WATCH_STDIN = !(args.noStdinWatch || /^(1|true|yes)$/i.test(env.SB_BROKER_IGNORE_STDIN || ''));
const HOST = '127.0.0.1';

const DEFAULTS = { maxDeliveryCount: 10, lockDurationMs: 30000, duplicateDetectionWindowMs: 0 };

function log(...parts) {
  process.stderr.write(`${new Date().toISOString()} sb-broker: ${parts.join(' ')}\n`);
}
function debug(...parts) {
  if (DEBUG) log(...parts);
}

// ---------------------------------------------------------------------------
// AMQP encoding helpers (rhea's typed values keep the wire type of everything we copy).

const SECTION_CODES = {
  'amqp:header:list': 0x70,
  'amqp:delivery-annotations:map': 0x71,
  'amqp:message-annotations:map': 0x72,
  'amqp:properties:list': 0x73,
  'amqp:application-properties:map': 0x74,
  'amqp:data:binary': 0x75,
  'amqp:amqp-sequence:list': 0x76,
  'amqp:value:*': 0x77,
  'amqp:footer:map': 0x78,
};

function described(code, typed) {
  return types.described(types.wrap_ulong(code), typed);
}

function encode(typedList) {
  const w = new types.Writer();
  for (const t of typedList) {
    if (Buffer.isBuffer(t)) w.write_bytes(t); else w.write(t);
  }
  return w.toBuffer();
}

function sectionCode(t) {
  if (!t || !t.descriptor) throw new Error('message section is not a described type');
  const v = t.descriptor.value;
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && SECTION_CODES[v] !== undefined) return SECTION_CODES[v];
  throw new Error(`unknown message section descriptor ${JSON.stringify(v)}`);
}

// Splits an encoded message into its sections, keeping each section's bytes.
function splitSections(buf) {
  const r = new types.Reader(buf);
  const out = [];
  while (r.remaining() > 0) {
    const start = r.position;
    const typed = r.read();
    out.push({ code: sectionCode(typed), typed, raw: buf.subarray(start, r.position) });
  }
  return out;
}

// Map items of a decoded (typed) map as [keyString, keyTyped, valueTyped].
function mapEntries(typedMap) {
  const items = (typedMap && Array.isArray(typedMap.value)) ? typedMap.value : [];
  const out = [];
  for (let i = 0; i + 1 < items.length; i += 2) {
    const k = items[i];
    out.push([String(types.unwrap(k)), k, items[i + 1]]);
  }
  return out;
}

function uuidString(b) {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The SDK reads a lock token from a delivery tag in .NET GUID byte order.
function dotnetGuidBytes(b) {
  const t = Buffer.from(b);
  [t[0], t[3]] = [t[3], t[0]];
  [t[1], t[2]] = [t[2], t[1]];
  [t[4], t[5]] = [t[5], t[4]];
  [t[6], t[7]] = [t[7], t[6]];
  return t;
}

function idToString(v, typed) {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (Buffer.isBuffer(v)) {
    if (typed && typed.type && typed.type.typecode === 0x98) return uuidString(v);
    return v.toString('hex');
  }
  return String(v);
}

function jsonValue(v) {
  if (v === undefined || v === null) return null;
  if (v instanceof Date) return v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (Array.isArray(v)) return v.map(jsonValue);
  if (typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v)) o[k] = jsonValue(v[k]);
    return o;
  }
  return v;
}

function timestampOf(typed) {
  if (!typed) return null;
  const v = types.unwrap(typed);
  if (v instanceof Date) return v.getTime();
  if (typeof v === 'number') return v;
  return null;
}

// Broker-owned annotations, rewritten on every delivery.
const BROKER_ANNOTATIONS = new Set([
  'x-opt-sequence-number', 'x-opt-enqueued-time', 'x-opt-locked-until', 'x-opt-message-state',
  'x-opt-deadletter-source', 'x-opt-enqueue-sequence-number', 'x-opt-lock-token',
]);

// A message as stored: the sender's sections verbatim, with what the broker needs parsed out.
class StoredMessage {
  static parse(buf) {
    const m = new StoredMessage();
    const body = [];
    for (const s of splitSections(buf)) {
      switch (s.code) {
        case 0x70: m.header = Array.isArray(s.typed.value) ? s.typed.value : []; break;
        case 0x71: break; // delivery annotations are per hop
        case 0x72: m.annotations = mapEntries(s.typed); break;
        case 0x73: m.propsRaw = Buffer.from(s.raw); m.props = Array.isArray(s.typed.value) ? s.typed.value : []; break;
        case 0x74: m.appPropsRaw = Buffer.from(s.raw); break;
        case 0x75: case 0x76: case 0x77: body.push(s); break;
        case 0x78: m.footerRaw = Buffer.from(s.raw); break;
        default: break;
      }
    }
    m.bodyRaw = Buffer.concat(body.map((s) => s.raw));
    m.bodySections = body.map((s) => ({ code: s.code, value: types.unwrap(s.typed) }));
    const p = m.props;
    m.messageId = p[0] ? idToString(types.unwrap(p[0]), p[0]) : null;
    const ttl = m.header[2] ? types.unwrap(m.header[2]) : null;
    m.ttlMs = typeof ttl === 'number' && ttl > 0 ? ttl : 0;
    const sched = m.annotations.find((e) => e[0] === 'x-opt-scheduled-enqueue-time');
    m.scheduledEnqueueTime = sched ? timestampOf(sched[2]) : null;
    m.size = buf.length;
    return m;
  }

  constructor() {
    this.header = [];
    this.annotations = [];
    this.propsRaw = null;
    this.props = [];
    this.appPropsRaw = null;
    this.bodyRaw = Buffer.alloc(0);
    this.bodySections = [];
    this.footerRaw = null;
    this.messageId = null;
    this.ttlMs = 0;
    this.scheduledEnqueueTime = null;
    // broker state
    this.seq = 0;
    this.enqueuedTime = 0;
    this.failedCount = 0; // AMQP header delivery-count; the SDK shows it + 1
    this.state = 'active'; // active | locked | scheduled | deferred
    this.deferred = false;
    this.lockHex = null;
    this.lockToken = null;
    this.lockedUntil = 0;
    this.lockTimer = null;
    this.scheduleTimer = null;
    this.delivery = null;
    this.deadLetterSource = null;
  }

  // A copy for another entity (the dead-letter queue): same bytes, fresh broker state.
  cloneForMove() {
    const c = new StoredMessage();
    for (const k of ['header', 'annotations', 'propsRaw', 'props', 'appPropsRaw', 'bodyRaw', 'bodySections',
      'footerRaw', 'messageId', 'ttlMs', 'size', 'enqueuedTime', 'failedCount']) c[k] = this[k];
    c.scheduledEnqueueTime = null;
    return c;
  }

  appPropEntries() {
    if (!this.appPropsRaw) return [];
    return mapEntries(new types.Reader(this.appPropsRaw).read());
  }

  // Sets application properties; values are rhea typed values. Existing keys are replaced,
  // all other entries keep their encoded types.
  setAppProps(pairs) {
    if (!pairs.length) return;
    const names = new Set(pairs.map((p) => p[0]));
    const items = [];
    for (const [name, k, v] of this.appPropEntries()) {
      if (!names.has(name)) items.push(k, v);
    }
    for (const [name, v] of pairs) items.push(types.wrap_string(name), v);
    this.appPropsRaw = encode([described(0x74, types.Map32(items))]);
  }

  prop(i) {
    return this.props[i] ? types.unwrap(this.props[i]) : null;
  }

  // The bytes sent to a receiver: our header and annotations, the sender's other sections.
  encode(q, opts) {
    const h = this.header;
    const parts = [];
    parts.push(described(0x70, types.List32([
      h[0] || types.Null(), h[1] || types.Null(), h[2] || types.Null(),
      types.wrap_boolean(this.failedCount === 0), types.Uint(this.failedCount),
    ])));
    if (opts.lockToken) {
      parts.push(described(0x71, types.Map32([types.wrap_symbol('x-opt-lock-token'), types.Uuid(opts.lockToken)])));
    }
    const ann = [];
    for (const [name, k, v] of this.annotations) {
      if (!BROKER_ANNOTATIONS.has(name)) ann.push(k, v);
    }
    ann.push(types.wrap_symbol('x-opt-sequence-number'), types.Long(this.seq));
    ann.push(types.wrap_symbol('x-opt-enqueued-time'), types.Timestamp(this.enqueuedTime));
    if (opts.lockedUntil) ann.push(types.wrap_symbol('x-opt-locked-until'), types.Timestamp(opts.lockedUntil));
    if (opts.state) ann.push(types.wrap_symbol('x-opt-message-state'), types.Long(opts.state));
    if (this.deadLetterSource) ann.push(types.wrap_symbol('x-opt-deadletter-source'), types.wrap_string(this.deadLetterSource));
    parts.push(described(0x72, types.Map32(ann)));
    if (this.propsRaw) parts.push(this.propsRaw);
    if (this.appPropsRaw) parts.push(this.appPropsRaw);
    parts.push(this.bodyRaw);
    if (this.footerRaw) parts.push(this.footerRaw);
    return encode(parts);
  }

  summary(q) {
    const appProps = {};
    for (const [name, , v] of this.appPropEntries()) appProps[name] = jsonValue(types.unwrap(v));
    let body = '';
    const data = this.bodySections.filter((s) => s.code === 0x75);
    if (data.length) {
      body = Buffer.concat(data.map((s) => (Buffer.isBuffer(s.value) ? s.value : Buffer.from(String(s.value))))).toString('utf8');
    } else if (this.bodySections.length === 1 && typeof this.bodySections[0].value === 'string') {
      body = this.bodySections[0].value;
    } else if (this.bodySections.length) {
      body = JSON.stringify(jsonValue(this.bodySections.length === 1 ? this.bodySections[0].value
        : this.bodySections.map((s) => s.value)));
    }
    const corr = this.props[5] ? idToString(types.unwrap(this.props[5]), this.props[5]) : null;
    return {
      sequenceNumber: this.seq,
      messageId: this.messageId,
      state: this.state,
      deliveryCount: this.failedCount + (this.state === 'locked' ? 1 : 0),
      enqueuedTime: new Date(this.enqueuedTime).toISOString(),
      scheduledEnqueueTime: this.scheduledEnqueueTime ? new Date(this.scheduledEnqueueTime).toISOString() : null,
      lockedUntil: this.state === 'locked' ? new Date(this.lockedUntil).toISOString() : null,
      correlationId: corr,
      subject: this.prop(3),
      contentType: this.prop(6),
      to: this.prop(2),
      replyTo: this.prop(4),
      sessionId: this.prop(10),
      timeToLiveMs: this.ttlMs || null,
      deadLetterSource: this.deadLetterSource,
      deadLetterReason: typeof appProps.DeadLetterReason === 'string' ? appProps.DeadLetterReason : null,
      deadLetterErrorDescription: typeof appProps.DeadLetterErrorDescription === 'string'
        ? appProps.DeadLetterErrorDescription : null,
      applicationProperties: appProps,
      body,
      size: this.size,
    };
  }
}

// ---------------------------------------------------------------------------
// Timers longer than setTimeout's 24.8-day limit.

const MAX_TIMER = 2147483647;
function setLongTimeout(fn, atMs) {
  const handle = { t: null };
  const arm = () => {
    const delay = atMs - Date.now();
    if (delay > MAX_TIMER) {
      handle.t = setTimeout(arm, MAX_TIMER);
    } else {
      handle.t = setTimeout(fn, Math.max(0, delay));
    }
  };
  arm();
  return handle;
}
function clearLongTimeout(h) {
  if (h && h.t) clearTimeout(h.t);
}

// ---------------------------------------------------------------------------
// Queues

class Queue {
  constructor(cfg, parent) {
    this.name = cfg.name;
    this.parent = parent || null; // set on a dead-letter queue
    this.isDLQ = Boolean(parent);
    this.maxDeliveryCount = cfg.maxDeliveryCount;
    this.lockDurationMs = cfg.lockDurationMs;
    this.duplicateDetectionWindowMs = cfg.duplicateDetectionWindowMs;
    this.denySend = Boolean(cfg.denySend);
    this.messages = new Map(); // seq -> StoredMessage, in sequence order
    this.available = []; // sorted seqs of active messages
    this.locks = new Map(); // lock token hex -> StoredMessage
    this.consumers = []; // rhea senders attached to this entity
    this.rr = 0;
    this.seenIds = new Map();
    this.seenInserts = 0;
    this.nextSeq = 1;
    this.stats = { duplicatesDropped: 0, totalSent: 0, completed: 0, expired: 0 };
    this.dlq = this.isDLQ ? null : new Queue({
      name: `${cfg.name}/$DeadLetterQueue`,
      maxDeliveryCount: Infinity,
      lockDurationMs: cfg.lockDurationMs,
      duplicateDetectionWindowMs: 0,
    }, this);
  }

  counts() {
    const c = { active: 0, locked: 0, scheduled: 0, deferred: 0 };
    for (const m of this.messages.values()) c[m.state]++;
    return c;
  }

  isDuplicate(messageId) {
    if (!this.duplicateDetectionWindowMs || messageId === null) return false;
    const now = Date.now();
    const exp = this.seenIds.get(messageId);
    if (exp !== undefined && exp > now) return true;
    this.seenIds.set(messageId, now + this.duplicateDetectionWindowMs);
    if (++this.seenInserts % 1000 === 0) {
      for (const [id, e] of this.seenIds) if (e <= now) this.seenIds.delete(id);
    }
    return false;
  }

  // Accepts a message from a sender. Returns its sequence number, or null for a dropped duplicate.
  enqueue(m) {
    this.stats.totalSent++;
    if (this.isDuplicate(m.messageId)) {
      this.stats.duplicatesDropped++;
      debug(`queue ${this.name}: dropped duplicate message-id ${m.messageId}`);
      return null;
    }
    this.add(m);
    return m.seq;
  }

  add(m) {
    m.seq = this.nextSeq++;
    this.messages.set(m.seq, m);
    const now = Date.now();
    if (!this.isDLQ && m.scheduledEnqueueTime && m.scheduledEnqueueTime > now) {
      m.state = 'scheduled';
      m.enqueuedTime = m.scheduledEnqueueTime;
      m.scheduleTimer = setLongTimeout(() => {
        m.scheduleTimer = null;
        if (this.messages.get(m.seq) !== m || m.state !== 'scheduled') return;
        m.enqueuedTime = Date.now();
        this.makeAvailable(m);
      }, m.scheduledEnqueueTime);
      return;
    }
    m.enqueuedTime = now;
    this.makeAvailable(m);
  }

  makeAvailable(m) {
    m.state = 'active';
    const a = this.available;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid] < m.seq) lo = mid + 1; else hi = mid;
    }
    if (a[lo] !== m.seq) a.splice(lo, 0, m.seq);
    schedulePump(this);
  }

  removeAvailable(m) {
    const i = this.available.indexOf(m.seq);
    if (i >= 0) this.available.splice(i, 1);
  }

  remove(m) {
    this.unlock(m);
    clearLongTimeout(m.scheduleTimer);
    m.scheduleTimer = null;
    this.removeAvailable(m);
    this.messages.delete(m.seq);
  }

  lock(m, delivery) {
    this.removeAvailable(m);
    const token = crypto.randomBytes(16);
    token[6] = (token[6] & 0x0f) | 0x40; // a well-formed v4 UUID
    token[8] = (token[8] & 0x3f) | 0x80;
    m.state = 'locked';
    m.lockToken = token;
    m.lockHex = token.toString('hex');
    m.delivery = delivery || null;
    this.locks.set(m.lockHex, m);
    this.armLock(m, Date.now() + this.lockDurationMs);
    return token;
  }

  armLock(m, until) {
    m.lockedUntil = until;
    if (m.lockTimer) clearTimeout(m.lockTimer);
    const hex = m.lockHex;
    m.lockTimer = setTimeout(() => {
      m.lockTimer = null;
      if (m.lockHex !== hex || m.state !== 'locked') return;
      debug(`queue ${this.name}: lock on #${m.seq} expired`);
      this.abandon(m, { increment: true });
    }, Math.max(0, until - Date.now()));
  }

  unlock(m) {
    if (m.lockTimer) clearTimeout(m.lockTimer);
    m.lockTimer = null;
    if (m.lockHex) this.locks.delete(m.lockHex);
    m.lockHex = null;
    m.lockToken = null;
    m.delivery = null;
  }

  complete(m) {
    this.remove(m);
    this.stats.completed++;
  }

  // Back to the queue (or to the deferred set), counting a failed delivery unless released.
  abandon(m, { increment, props }) {
    this.unlock(m);
    if (props && props.length) m.setAppProps(props);
    if (increment) m.failedCount++;
    if (!this.isDLQ && m.failedCount >= this.maxDeliveryCount) {
      this.deadLetter(m, 'MaxDeliveryCountExceeded',
        `Message could not be consumed after ${this.maxDeliveryCount} delivery attempts.`, []);
      return;
    }
    if (m.deferred) {
      m.state = 'deferred';
    } else {
      this.makeAvailable(m);
    }
  }

  defer(m, props) {
    this.unlock(m);
    if (props && props.length) m.setAppProps(props);
    m.deferred = true;
    m.state = 'deferred';
  }

  deadLetter(m, reason, description, props) {
    if (this.isDLQ) {
      // Dead-lettering from the dead-letter queue leaves the message where it is.
      this.abandon(m, { increment: false, props });
      return;
    }
    this.remove(m);
    const c = m.cloneForMove();
    c.deadLetterSource = this.name;
    const pairs = [];
    if (reason !== null && reason !== undefined) pairs.push(['DeadLetterReason', types.wrap_string(String(reason))]);
    if (description !== null && description !== undefined) {
      pairs.push(['DeadLetterErrorDescription', types.wrap_string(String(description))]);
    }
    c.setAppProps(pairs.concat((props || []).filter((p) => p[0] !== 'DeadLetterReason' && p[0] !== 'DeadLetterErrorDescription')));
    debug(`queue ${this.name}: #${m.seq} dead-lettered (${reason})`);
    this.dlq.add(c);
  }

  purge() {
    let n = 0;
    for (const m of Array.from(this.messages.values())) {
      this.remove(m);
      n++;
    }
    return n;
  }

  expireIfDue(m, now) {
    if (this.isDLQ || !m.ttlMs || m.enqueuedTime + m.ttlMs > now) return false;
    this.remove(m);
    this.stats.expired++;
    return true;
  }
}

const queues = new Map(); // lower-case name -> Queue

function normalizeQueueConfig(c) {
  if (!c || typeof c.name !== 'string' || !c.name) throw new Error(`queue config needs a name: ${JSON.stringify(c)}`);
  const num = (v, d, name, min) => {
    if (v === undefined || v === null) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`queue ${c.name}: ${name} must be a number >= ${min}`);
    return n;
  };
  return {
    name: c.name.replace(/^\/+|\/+$/g, ''),
    maxDeliveryCount: num(c.maxDeliveryCount, DEFAULTS.maxDeliveryCount, 'maxDeliveryCount', 1),
    lockDurationMs: num(c.lockDurationMs, DEFAULTS.lockDurationMs, 'lockDurationMs', 1),
    duplicateDetectionWindowMs: num(c.duplicateDetectionWindowMs, DEFAULTS.duplicateDetectionWindowMs,
      'duplicateDetectionWindowMs', 0),
    // Refuse sends, as Service Bus does for a sender without the Data Sender role.
    denySend: Boolean(c.denySend),
  };
}

// Creates a queue, or changes the settings of an existing one (messages are kept).
function defineQueue(c) {
  const cfg = normalizeQueueConfig(c);
  const existing = queues.get(cfg.name.toLowerCase());
  if (existing) {
    existing.maxDeliveryCount = cfg.maxDeliveryCount;
    existing.lockDurationMs = cfg.lockDurationMs;
    existing.duplicateDetectionWindowMs = cfg.duplicateDetectionWindowMs;
    existing.denySend = cfg.denySend;
    existing.dlq.lockDurationMs = cfg.lockDurationMs;
    return existing;
  }
  const q = new Queue(cfg);
  queues.set(cfg.name.toLowerCase(), q);
  return q;
}

function getQueue(name, create) {
  const key = name.toLowerCase();
  let q = queues.get(key);
  if (!q && create) {
    q = defineQueue({ name });
    log(`auto-created queue ${name} with defaults`);
  }
  return q;
}

// Resolves a link address to {kind: 'cbs'|'entity'|'management', queue}.
function resolveAddress(address) {
  let p = String(address || '').replace(/^amqps?:\/\/[^/]+\//i, '').replace(/^\/+|\/+$/g, '');
  if (p.toLowerCase() === '$cbs') return { kind: 'cbs' };
  let kind = 'entity';
  if (/\/\$management$/i.test(p)) {
    kind = 'management';
    p = p.slice(0, -'/$management'.length);
  } else if (p.toLowerCase() === '$management') {
    return { kind: 'management', queue: null };
  }
  let dlq = false;
  if (/\/\$deadletterqueue$/i.test(p)) {
    dlq = true;
    p = p.slice(0, -'/$deadletterqueue'.length);
  }
  if (!p) return { kind, queue: null };
  const q = getQueue(p, true);
  return { kind, queue: dlq ? q.dlq : q };
}

// ---------------------------------------------------------------------------
// Delivering to receivers

const pumpScheduled = new Set();
function schedulePump(q) {
  if (pumpScheduled.has(q)) return;
  pumpScheduled.add(q);
  process.nextTick(() => {
    pumpScheduled.delete(q);
    pump(q);
  });
}

function linkUsable(link) {
  return link.sb && !link.sb.closed && link.is_open() && !link.is_closed();
}

// Credit not yet used by deliveries rhea has queued but not transferred.
function effectiveCredit(link) {
  if (!link.session.outgoing.available()) return 0;
  const out = link.session.outgoing;
  let pending = 0;
  for (let id = out.next_pending_delivery; id < out.next_delivery_id; id++) {
    const d = out.deliveries.by_id(id);
    if (d && d.link === link) pending++;
  }
  return link.credit - pending;
}

function pickConsumer(q) {
  q.consumers = q.consumers.filter(linkUsable);
  const n = q.consumers.length;
  for (let i = 0; i < n; i++) {
    const link = q.consumers[(q.rr + i) % n];
    if (effectiveCredit(link) > 0) {
      q.rr = (q.rr + i + 1) % n;
      return link;
    }
  }
  return null;
}

function pump(q) {
  const now = Date.now();
  while (q.available.length) {
    const link = pickConsumer(q);
    if (!link) break;
    const m = q.messages.get(q.available[0]);
    if (!m) {
      q.available.shift();
      continue;
    }
    if (q.expireIfDue(m, now)) continue;
    deliver(q, m, link);
  }
  for (const link of q.consumers) {
    if (link._draining && !q.available.length) link.set_drained(true);
  }
}

function deliver(q, m, link) {
  if (link.sb.presettled) {
    // ReceiveAndDelete: the message is gone once sent.
    q.removeAvailable(m);
    const payload = m.encode(q, { state: m.deferred ? 1 : 0 });
    q.complete(m);
    link.send(payload, crypto.randomBytes(16), 0);
    return;
  }
  const token = q.lock(m, null);
  const payload = m.encode(q, { lockToken: token, lockedUntil: m.lockedUntil });
  const d = link.send(payload, dotnetGuidBytes(token), 0);
  d.sb = { queue: q, msg: m, lockHex: m.lockHex };
  m.delivery = d;
  debug(`queue ${q.name}: #${m.seq} -> ${link.name} (delivery ${d.id}, count ${m.failedCount + 1})`);
}

function settleDelivery(d, state) {
  if (d.settled && d.remote_settled) return;
  d.update(true, state);
  // In rcv-settle-mode second our settlement is final; let rhea drop the delivery.
  d.remote_settled = true;
}

const lockLostState = () => rheaMessage.rejected({
  error: {
    condition: 'com.microsoft:message-lock-lost',
    description: 'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.',
  },
}).described();

function typedMapPairs(typedMap, keyFilter) {
  if (!typedMap || !Array.isArray(typedMap.value)) return [];
  return mapEntries(typedMap).filter((e) => !keyFilter || keyFilter(e[0])).map((e) => [e[0], e[2]]);
}

// A receiver settled (or released) a message we sent on a link.
function onOutcome(context) {
  const d = context.delivery;
  if (!d || !d.sb || d.sb.handled) {
    if (d && !(d.settled && d.remote_settled)) settleDelivery(d, d.remote_state ? d.remote_state.described() : undefined);
    return;
  }
  d.sb.handled = true;
  const { queue: q, msg: m, lockHex } = d.sb;
  const outcome = d.remote_state;
  const kind = outcome && outcome.constructor && outcome.constructor.composite_type;
  if (m.lockHex !== lockHex || m.state !== 'locked' || q.messages.get(m.seq) !== m) {
    debug(`queue ${q.name}: ${kind} on #${m.seq} after its lock was lost`);
    settleDelivery(d, lockLostState());
    return;
  }
  switch (kind) {
    case 'accepted':
      q.complete(m);
      settleDelivery(d, rheaMessage.accepted().described());
      break;
    case 'released':
      q.abandon(m, { increment: false });
      settleDelivery(d, rheaMessage.released().described());
      break;
    case 'modified': {
      const v = outcome.value || [];
      const failed = Boolean(types.unwrap(v[0]));
      const undeliverable = Boolean(types.unwrap(v[1]));
      const props = typedMapPairs(v[2]);
      if (undeliverable && !failed) {
        q.defer(m, props);
      } else {
        q.abandon(m, { increment: true, props });
      }
      settleDelivery(d, rheaMessage.modified({ delivery_failed: failed, undeliverable_here: undeliverable }).described());
      break;
    }
    case 'rejected': {
      const err = (outcome.value || [])[0];
      const ev = err && Array.isArray(err.value) ? err.value : [];
      const condition = ev[0] ? types.unwrap(ev[0]) : null;
      const info = typedMapPairs(ev[2]);
      const get = (k) => {
        const e = info.find((p) => p[0] === k);
        return e ? types.unwrap(e[1]) : null;
      };
      const reason = get('DeadLetterReason') !== null ? get('DeadLetterReason') : (condition || null);
      const description = get('DeadLetterErrorDescription') !== null ? get('DeadLetterErrorDescription')
        : (ev[1] ? types.unwrap(ev[1]) : null);
      const extra = info.filter((p) => p[0] !== 'DeadLetterReason' && p[0] !== 'DeadLetterErrorDescription');
      q.deadLetter(m, reason, description, extra);
      settleDelivery(d, rheaMessage.rejected({}).described());
      break;
    }
    default:
      log(`queue ${q.name}: unexpected outcome ${kind} on #${m.seq}; abandoning`);
      q.abandon(m, { increment: false });
      settleDelivery(d, rheaMessage.released().described());
  }
}

// ---------------------------------------------------------------------------
// Request/response nodes: $cbs and <entity>/$management

function findReplyLink(connection, address) {
  for (const ch of Object.keys(connection.local_channel_map)) {
    const s = connection.local_channel_map[ch];
    for (const name of Object.keys(s.links)) {
      const l = s.links[name];
      const t = l.is_sender() && l.remote.attach && l.remote.attach.target;
      if (t && t.address === address && !l.is_closed()) return l;
    }
  }
  return null;
}

function reply(connection, request, status, description, bodyTyped) {
  const replyTo = request.reply_to;
  if (!replyTo) {
    log(`request without reply-to dropped (status ${status})`);
    return;
  }
  const link = findReplyLink(connection, replyTo);
  if (!link) {
    log(`no reply link for ${replyTo}; response ${status} dropped`);
    return;
  }
  const corr = request.message_id !== undefined && request.message_id !== null
    ? types.wrap_message_id(request.message_id) : types.Null();
  const parts = [
    described(0x73, types.List32([types.Null(), types.Null(), types.Null(), types.Null(), types.Null(), corr])),
    described(0x74, types.Map32([
      types.wrap_string('status-code'), types.Int(status),
      types.wrap_string('status-description'), types.wrap_string(description),
    ])),
  ];
  if (bodyTyped) parts.push(described(0x77, bodyTyped));
  link.send(encode(parts), undefined, 0);
}

function handleCbs(connection, request) {
  const op = request.application_properties && request.application_properties.operation;
  if (op === 'put-token') {
    reply(connection, request, 202, 'Accepted');
  } else {
    reply(connection, request, 501, `operation ${op} is not supported by the local broker`);
  }
}

function asArray(v) {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}

function toHex(token) {
  if (Buffer.isBuffer(token)) return token.toString('hex');
  if (typeof token === 'string') return token.replace(/-/g, '').toLowerCase();
  return String(token);
}

function wrapLoose(v) {
  if (typeof v === 'number' && Number.isInteger(v)) return types.wrap_long(v);
  if (typeof v === 'number') return types.Double(v);
  return types.wrap(v);
}

function messagesBody(list) {
  return types.Map32([types.wrap_string('messages'), types.List32(list.map((e) => types.Map32(e)))]);
}

const LOCK_LOST_TEXT = 'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.';

function handleManagement(connection, q, request) {
  const ap = request.application_properties || {};
  const op = ap.operation;
  const body = (request.body && typeof request.body === 'object' && !Buffer.isBuffer(request.body)) ? request.body : {};
  if (!q) {
    reply(connection, request, 404, 'management requests need an entity path (<queue>/$management)');
    return;
  }
  debug(`management ${op} on ${q.name}`);
  switch (op) {
    case 'com.microsoft:peek-message': {
      const from = Number(body['from-sequence-number'] || 0);
      const count = Math.max(1, Number(body['message-count'] || 1));
      const out = [];
      for (const m of q.messages.values()) {
        if (m.seq < from) continue;
        if (out.length >= count) break;
        const state = m.state === 'scheduled' ? 2 : (m.deferred ? 1 : 0);
        out.push([types.wrap_string('message'),
          types.wrap_binary(m.encode(q, { state, lockedUntil: m.state === 'locked' ? m.lockedUntil : 0 }))]);
      }
      if (!out.length) {
        reply(connection, request, 204, 'No messages');
      } else {
        reply(connection, request, 200, 'OK', messagesBody(out));
      }
      return;
    }
    case 'com.microsoft:schedule-message': {
      if (q.isDLQ) {
        reply(connection, request, 400, 'cannot send to a dead-letter queue');
        return;
      }
      const seqs = [];
      for (const entry of asArray(body.messages)) {
        const raw = entry && entry.message;
        if (!Buffer.isBuffer(raw)) {
          reply(connection, request, 400, 'schedule-message entry without an encoded message');
          return;
        }
        const m = StoredMessage.parse(raw);
        if (m.messageId === null && entry['message-id'] !== undefined) m.messageId = String(entry['message-id']);
        if (m.size > MAX_MESSAGE_SIZE) {
          reply(connection, request, 413, `message of ${m.size} bytes exceeds the limit of ${MAX_MESSAGE_SIZE}`);
          return;
        }
        const seq = q.enqueue(m);
        seqs.push(seq === null ? 0 : seq);
      }
      reply(connection, request, 200, 'OK', types.Map32([
        types.wrap_string('sequence-numbers'), types.wrap_array(seqs, types.Long.typecode),
      ]));
      return;
    }
    case 'com.microsoft:cancel-scheduled-message': {
      for (const s of asArray(body['sequence-numbers'])) {
        const m = q.messages.get(Number(s));
        if (m && m.state === 'scheduled') q.remove(m);
      }
      reply(connection, request, 200, 'OK');
      return;
    }
    case 'com.microsoft:renew-lock': {
      const msgs = [];
      for (const t of asArray(body['lock-tokens'])) {
        const m = q.locks.get(toHex(t));
        if (!m || m.state !== 'locked') {
          reply(connection, request, 410, LOCK_LOST_TEXT);
          return;
        }
        msgs.push(m);
      }
      const until = Date.now() + q.lockDurationMs;
      for (const m of msgs) q.armLock(m, until);
      reply(connection, request, 200, 'OK', types.Map32([
        types.wrap_string('expirations'), types.wrap_array(msgs.map(() => until), types.Timestamp.typecode),
      ]));
      return;
    }
    case 'com.microsoft:update-disposition': {
      const status = String(body['disposition-status'] || '');
      const props = [];
      const ptm = body['properties-to-modify'];
      if (ptm && typeof ptm === 'object') for (const k of Object.keys(ptm)) props.push([k, wrapLoose(ptm[k])]);
      for (const t of asArray(body['lock-tokens'])) {
        const m = q.locks.get(toHex(t));
        if (!m || m.state !== 'locked') {
          reply(connection, request, 410, LOCK_LOST_TEXT);
          return;
        }
        if (m.delivery) {
          m.delivery.sb.handled = true;
          settleDelivery(m.delivery, lockLostState());
        }
        switch (status) {
          case 'completed': q.complete(m); break;
          case 'abandoned': q.abandon(m, { increment: true, props }); break;
          case 'defered': case 'deferred': q.defer(m, props); break;
          case 'suspended': q.deadLetter(m, body['deadletter-reason'], body['deadletter-description'], props); break;
          default:
            reply(connection, request, 400, `unknown disposition-status ${status}`);
            return;
        }
      }
      reply(connection, request, 200, 'OK');
      return;
    }
    case 'com.microsoft:receive-by-sequence-number': {
      const peekLock = Number(body['receiver-settle-mode'] || 0) === 1;
      const found = [];
      for (const s of asArray(body['sequence-numbers'])) {
        const m = q.messages.get(Number(s));
        if (!m || m.state !== 'deferred') {
          reply(connection, request, 404, `no deferred message with sequence number ${s}`);
          return;
        }
        found.push(m);
      }
      const out = [];
      for (const m of found) {
        if (peekLock) {
          const token = q.lock(m, null);
          out.push([types.wrap_string('lock-token'), types.Uuid(token), types.wrap_string('message'),
            types.wrap_binary(m.encode(q, { lockToken: token, lockedUntil: m.lockedUntil, state: 1 }))]);
        } else {
          out.push([types.wrap_string('message'), types.wrap_binary(m.encode(q, { state: 1 }))]);
          q.complete(m);
        }
      }
      reply(connection, request, 200, 'OK', messagesBody(out));
      return;
    }
    default:
      reply(connection, request, 501, `operation ${op} is not supported by the local broker`);
  }
}

// ---------------------------------------------------------------------------
// AMQP wiring

// Keep each received message's bytes: rhea decodes plain messages (format 0) with
// message.decode before handing them to us, so we hand back the raw buffer instead.
const RAW = Symbol('raw');
const decodeMessage = rheaMessage.decode;
rheaMessage.decode = (buf) => ({ [RAW]: buf });

const BATCH_FORMAT = 0x80013700;

function onIncoming(context) {
  const link = context.receiver;
  const delivery = context.delivery;
  try {
    const raw = Buffer.isBuffer(context.message) ? context.message : context.message[RAW];
    const format = context.format || 0;
    const target = link.sb ? link.sb.target : { kind: 'entity', queue: null };
    if (target.kind === 'cbs') {
      delivery.accept();
      handleCbs(context.connection, decodeMessage(raw));
      return;
    }
    if (target.kind === 'management') {
      delivery.accept();
      handleManagement(context.connection, target.queue, decodeMessage(raw));
      return;
    }
    const q = target.queue;
    if (!q) throw Object.assign(new Error('no entity in the link target address'), { condition: 'amqp:not-found' });
    if (q.isDLQ) throw Object.assign(new Error('cannot send to a dead-letter queue'), { condition: 'amqp:not-allowed' });
    if (q.denySend) throw Object.assign(new Error(`Unauthorized access. 'Send' claim(s) are required to perform this operation. Resource: 'sb://localhost/${q.name}'.`), { condition: 'amqp:unauthorized-access' });
    const msgs = [];
    if (format === BATCH_FORMAT) {
      for (const s of splitSections(raw)) {
        if (s.code === 0x75) msgs.push(StoredMessage.parse(Buffer.from(types.unwrap(s.typed))));
      }
    } else if (format === 0) {
      msgs.push(StoredMessage.parse(Buffer.from(raw)));
    } else {
      throw Object.assign(new Error(`unsupported message format 0x${format.toString(16)}`), { condition: 'amqp:not-implemented' });
    }
    for (const m of msgs) {
      if (m.size > MAX_MESSAGE_SIZE) {
        throw Object.assign(new Error(`message of ${m.size} bytes exceeds the limit of ${MAX_MESSAGE_SIZE}`),
          { condition: 'amqp:link:message-size-exceeded' });
      }
    }
    for (const m of msgs) q.enqueue(m);
    debug(`queue ${q.name}: received ${msgs.length} message(s)`);
    delivery.accept();
  } catch (e) {
    log(`rejecting message on ${link.name}: ${e.message}`);
    delivery.reject({ condition: e.condition || 'amqp:decode-error', description: e.message });
  }
}

function echoAttach(link) {
  const ra = link.remote.attach || {};
  const src = ra.source;
  const tgt = ra.target;
  link.set_source(src ? { address: src.address } : {});
  link.set_target(tgt ? { address: tgt.address } : {});
  // go-amqp insists on getting back the settle modes it asked for.
  if (ra.snd_settle_mode !== undefined && ra.snd_settle_mode !== null) link.local.attach.snd_settle_mode = ra.snd_settle_mode;
  if (ra.rcv_settle_mode !== undefined && ra.rcv_settle_mode !== null) link.local.attach.rcv_settle_mode = ra.rcv_settle_mode;
  return { source: src ? src.address : null, target: tgt ? tgt.address : null };
}

function trackLink(link) {
  const c = link.connection;
  if (!c.sbLinks) c.sbLinks = new Set();
  c.sbLinks.add(link);
}

function releaseLink(link) {
  if (!link.sb || link.sb.closed) return;
  link.sb.closed = true;
  if (link.sb.queue) {
    const q = link.sb.queue;
    q.consumers = q.consumers.filter((l) => l !== link);
    // The peer can no longer settle these deliveries; let rhea forget them.
    // Their messages stay locked until the lock expires, as on Service Bus.
    const out = link.session.outgoing.deliveries;
    for (let i = 0; i < out.size; i++) {
      const d = out.entries[(out.head + i) % out.capacity];
      if (d && d.link === link) {
        d.settled = true;
        d.remote_settled = true;
      }
    }
    schedulePump(q);
  }
}

function releaseConnection(connection) {
  if (!connection.sbLinks) return;
  for (const l of connection.sbLinks) releaseLink(l);
  connection.sbLinks.clear();
}

const container = rhea.create_container({ id: 'devstack-servicebus' });

container.on('sender_open', (context) => {
  // The peer attached a receiving link: a queue/DLQ consumer or a $cbs/$management reply link.
  const link = context.sender;
  const { source } = echoAttach(link);
  const r = resolveAddress(source);
  link.sb = { closed: false, queue: null, presettled: link.local.attach.snd_settle_mode === 1 };
  trackLink(link);
  if (r.kind === 'entity' && r.queue) {
    link.sb.queue = r.queue;
    r.queue.consumers.push(link);
    debug(`receiver ${link.name} attached to ${r.queue.name}${link.sb.presettled ? ' (receive-and-delete)' : ''}`);
  }
});

container.on('receiver_open', (context) => {
  // The peer attached a sending link: to a queue, $cbs or <entity>/$management.
  const link = context.receiver;
  const { target } = echoAttach(link);
  link.local.attach.max_message_size = MAX_MESSAGE_SIZE;
  link.sb = { closed: false, queue: null, target: resolveAddress(target) };
  trackLink(link);
  debug(`sender ${link.name} attached to ${target}`);
});

container.on('message', onIncoming);
for (const ev of ['accepted', 'released', 'rejected', 'modified']) container.on(ev, onOutcome);

container.on('sender_flow', (context) => {
  const link = context.sender;
  if (link.sb && link.sb.queue) pump(link.sb.queue);
});
container.on('sendable', (context) => {
  const link = context.sender;
  if (link.sb && link.sb.queue) schedulePump(link.sb.queue);
});

container.on('sender_close', (context) => releaseLink(context.sender));
container.on('receiver_close', (context) => {
  if (context.receiver.sb) context.receiver.sb.closed = true;
});
container.on('session_close', (context) => {
  const s = context.session;
  for (const name of Object.keys(s.links)) releaseLink(s.links[name]);
});
container.on('connection_open', (context) => debug(`connection ${context.connection.options.id} opened`));
container.on('connection_close', (context) => releaseConnection(context.connection));
container.on('disconnected', (context) => {
  debug(`connection ${context.connection.options.id} disconnected${context.error ? `: ${context.error}` : ''}`);
  releaseConnection(context.connection);
});
container.on('connection_error', (context) => debug(`connection error: ${context.error}`));
container.on('session_error', (context) => debug(`session error: ${context.session.error && context.session.error.description}`));
container.on('sender_error', (context) => debug(`link error: ${context.sender.error && context.sender.error.description}`));
container.on('receiver_error', (context) => debug(`link error: ${context.receiver.error && context.receiver.error.description}`));
container.on('protocol_error', (e) => log(`protocol error: ${e}`));
container.on('error', (e) => log(`error: ${e && e.stack ? e.stack : e}`));

// ---------------------------------------------------------------------------
// Admin HTTP API (JSON)

function queueStats(q) {
  const c = q.counts();
  return {
    active: c.active,
    locked: c.locked,
    scheduled: c.scheduled,
    deferred: c.deferred,
    deadLettered: q.dlq ? q.dlq.messages.size : 0,
    duplicatesDropped: q.stats.duplicatesDropped,
    totalSent: q.stats.totalSent,
    completed: q.stats.completed,
    expired: q.stats.expired,
    maxDeliveryCount: q.maxDeliveryCount,
    lockDurationMs: q.lockDurationMs,
    duplicateDetectionWindowMs: q.duplicateDetectionWindowMs,
  };
}

function sendJSON(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function isDeadLetterSub(sub) {
  return /^(deadletter|dead-letter|dlq|\$deadletterqueue)$/i.test(sub || '');
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function putQueue(req, res, name) {
  let cfg = {};
  const text = await readBody(req);
  if (text.trim()) cfg = JSON.parse(text);
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('body must be a JSON object');
  const q = defineQueue(Object.assign({}, cfg, { name }));
  sendJSON(res, 200, Object.assign({ name: q.name }, queueStats(q)));
}

function handleAdmin(req, res) {
  const url = new URL(req.url, 'http://admin');
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const sub = url.searchParams.get('sub');
  try {
    if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/healthz')) {
      sendJSON(res, 200, { ok: true, queues: queues.size });
      return;
    }
    if (parts[0] !== 'queues') {
      sendJSON(res, 404, { error: 'not found' });
      return;
    }
    if (parts.length === 1 && req.method === 'GET') {
      const out = {};
      for (const q of queues.values()) out[q.name] = queueStats(q);
      sendJSON(res, 200, out);
      return;
    }
    // Queue names may contain '/', e.g. GET /queues/a/b/messages.
    const last = parts[parts.length - 1];
    const action = parts.length > 2 && (last === 'messages' || last === 'purge') ? last : null;
    const name = parts.slice(1, action ? -1 : undefined).join('/');
    if (!action && req.method === 'PUT') {
      putQueue(req, res, name).catch((e) => sendJSON(res, 400, { error: String(e.message || e) }));
      return;
    }
    const q = getQueue(name, false);
    if (!q) {
      sendJSON(res, 404, { error: `queue ${name} not found` });
      return;
    }
    const target = isDeadLetterSub(sub) ? q.dlq : q;
    if (sub && !isDeadLetterSub(sub)) {
      sendJSON(res, 400, { error: `unknown sub-queue ${sub} (use sub=deadletter)` });
      return;
    }
    if (!action && req.method === 'GET') {
      sendJSON(res, 200, Object.assign({ name: q.name }, queueStats(q)));
    } else if (action === 'messages' && req.method === 'GET') {
      sendJSON(res, 200, Array.from(target.messages.values()).map((m) => m.summary(target)));
    } else if (action === 'purge' && req.method === 'POST') {
      const purged = sub ? target.purge() : q.purge() + q.dlq.purge();
      sendJSON(res, 200, { purged });
    } else {
      sendJSON(res, 405, { error: `${req.method} not allowed here` });
    }
  } catch (e) {
    log(`admin ${req.method} ${req.url}: ${e.stack || e}`);
    sendJSON(res, 500, { error: String(e.message || e) });
  }
}

// ---------------------------------------------------------------------------
// Start-up and shutdown

function shutdown(code) {
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.on('uncaughtException', (e) => {
  log(`internal error: ${e && e.stack ? e.stack : e}`);
  shutdown(70);
});

function main() {
  let configs = [];
  const qjson = args.queues !== undefined ? args.queues : env.SB_BROKER_QUEUES;
  if (qjson) {
    try {
      configs = JSON.parse(qjson);
    } catch (e) {
      fatal(`--queues is not valid JSON: ${e.message}`);
    }
    if (!Array.isArray(configs)) fatal('--queues must be a JSON array');
  }
  try {
    for (const c of configs) defineQueue(c);
  } catch (e) {
    fatal(e.message);
  }

  if (WATCH_STDIN) {
    // The parent holds our stdin open; when it goes away, so do we.
    process.stdin.on('end', () => shutdown(0));
    process.stdin.on('close', () => shutdown(0));
    process.stdin.on('error', () => shutdown(0));
    process.stdin.resume();
  }

  const amqpServer = container.listen({
    host: HOST,
    port: AMQP_PORT,
    tcp_no_delay: true,
    session_buffer_size: 16384,
    sender_options: { autosettle: false, treat_modified_as_released: false },
    receiver_options: { autoaccept: false, credit_window: 1000 },
  });
  amqpServer.on('error', (e) => fatal(`AMQP listener on ${HOST}:${AMQP_PORT}: ${e.message}`));
  amqpServer.on('listening', () => {
    const admin = http.createServer(handleAdmin);
    admin.on('error', (e) => fatal(`admin listener on ${HOST}:${ADMIN_PORT}: ${e.message}`));
    admin.listen(ADMIN_PORT, HOST, () => {
      const ports = { amqpPort: amqpServer.address().port, adminPort: admin.address().port };
      process.stdout.write(`${JSON.stringify(ports)}\n`);
      log(`listening: amqp://${HOST}:${ports.amqpPort} admin http://${HOST}:${ports.adminPort} ` +
        `(${queues.size} queue(s) configured)`);
    });
  });
}

main();
