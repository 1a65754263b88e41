import { createRequire } from 'node:module';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import type * as Tls from 'node:tls';
import { connectionError, type RedisTarget } from './connection.js';
import { RedisBackupError } from './errors.js';

/**
 * A minimal pipelined RESP2 connection for bulk work (an export, a restore): commands are
 * encoded straight into one buffer per batch and their replies parsed as they stream back,
 * with no object or promise per command. A general client spends several microseconds and a
 * few hundred bytes of garbage on each command, which made a restore of a million keys
 * CPU-bound at ~100k keys/s; written this way the server is the limit, as with
 * `redis-cli --pipe`. It also keeps a general client's ~25 MB of code out of a backup.
 */

/** A server error reply (`-ERR ...`), kept in place among the replies of its batch. */
export class RespError extends Error {
  override readonly name = 'RespError';
}

/** One reply: nil, an integer, a status, a bulk string, an array, or an error. */
export type RespReply = null | number | string | Buffer | RespReply[] | RespError;

/** Base64 text sent as the bytes it encodes, decoded straight into the outgoing buffer. */
export class Base64Arg {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/** An argument: UTF-8 text, bytes, an integer, or {@link Base64Arg}. */
export type RespArg = string | Buffer | number | Base64Arg;

let tls: typeof Tls | undefined;

/** Opens the socket a target names (TCP, TLS or a unix socket), not yet connected. */
export function openSocket(target: RedisTarget): Socket {
  if (target.path) return netConnect({ path: target.path });
  if (target.tls) {
    // Loaded on first use: node:tls costs ~6 MB of resident memory that plain TCP never needs.
    tls ??= createRequire(import.meta.url)('node:tls') as typeof Tls;
    // SNI must not carry an IP address (Node warns, servers ignore it).
    return tls.connect({ host: target.host, port: target.port, ...(isIP(target.host) ? {} : { servername: target.host }) });
  }
  return netConnect({ host: target.host, port: target.port });
}

const CRLF_0 = 0x0d;
const INITIAL_BYTES = 256 * 1024;
const RESTORE_HEAD = Buffer.from('*5\r\n$7\r\nRESTORE\r\n', 'latin1');
const RESTORE_REPLACE_HEAD = Buffer.from('*6\r\n$7\r\nRESTORE\r\n', 'latin1');
const ABSTTL = Buffer.from('$6\r\nABSTTL\r\n', 'latin1');
const ABSTTL_REPLACE = Buffer.from('$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n', 'latin1');

/** Commands encoded into one growing buffer, sent together by {@link RespConnection.exec}. */
export class RespBatch {
  private out: Buffer;
  private pos = 0;
  /** Commands in this batch. */
  count = 0;

  /** @param initialBytes the buffer's first size (it doubles as needed): small for one short command */
  constructor(initialBytes = INITIAL_BYTES) {
    this.out = Buffer.allocUnsafe(initialBytes);
  }

  /** Bytes encoded so far. */
  get bytes(): number {
    return this.pos;
  }

  /**
   * Appends one command.
   * @throws RedisBackupError REDIS_BACKUP_INVALID when a {@link Base64Arg} is not base64
   */
  command(args: readonly RespArg[]): void {
    const start = this.pos;
    try {
      this.encode(args);
    } catch (error) {
      // Nothing of a refused command stays in the batch.
      this.pos = start;
      throw error;
    }
    this.count++;
  }

  /**
   * Appends `RESTORE key expireAt payload ABSTTL [REPLACE]` with the payload (and, with
   * `keyIsBase64`, the key) given as base64 text: a restore's one command per key, encoded
   * without building an argument list for it.
   * @throws RedisBackupError REDIS_BACKUP_INVALID when the base64 text does not decode
   */
  restore(key: string, keyIsBase64: boolean, expireAt: number, payload: string, replace: boolean): void {
    const start = this.pos;
    try {
      this.raw(replace ? RESTORE_REPLACE_HEAD : RESTORE_HEAD);
      if (keyIsBase64) this.base64(key);
      else this.text(key);
      this.integer(expireAt);
      this.base64(payload);
      this.raw(replace ? ABSTTL_REPLACE : ABSTTL);
    } catch (error) {
      this.pos = start;
      throw error;
    }
    this.count++;
  }

  /**
   * Like {@link restore}, with the key and the payload read in place from the bytes of an
   * export line (see LineBatch.exact in records.ts): the key copied (or decoded, when it is
   * base64) and the payload decoded into the batch, with nothing kept of either.
   * @throws RedisBackupError REDIS_BACKUP_INVALID when the base64 text does not decode
   */
  restoreFrom(
    data: Buffer,
    key: { start: number; end: number; base64: boolean },
    expireAt: number,
    payload: { start: number; end: number },
    replace: boolean,
  ): void {
    const start = this.pos;
    try {
      this.raw(replace ? RESTORE_REPLACE_HEAD : RESTORE_HEAD);
      if (key.base64) this.base64From(data, key.start, key.end);
      else {
        const length = key.end - key.start;
        this.header(0x24, length);
        this.reserve(length + 2);
        this.pos += data.copy(this.out, this.pos, key.start, key.end);
        this.crlf();
      }
      this.integer(expireAt);
      this.base64From(data, payload.start, payload.end);
      this.raw(replace ? ABSTTL_REPLACE : ABSTTL);
    } catch (error) {
      this.pos = start;
      throw error;
    }
    this.count++;
  }

  /** Makes the batch empty again, keeping its buffer (only once the server answered all of it). */
  reset(): this {
    this.pos = 0;
    this.count = 0;
    return this;
  }

  private encode(args: readonly RespArg[]): void {
    this.header(0x2a /* * */, args.length);
    for (const arg of args) {
      if (typeof arg === 'string') this.text(arg);
      else if (typeof arg === 'number') this.integer(arg);
      else if (arg instanceof Base64Arg) this.base64(arg.text);
      else {
        this.header(0x24 /* $ */, arg.length);
        this.reserve(arg.length + 2);
        this.pos += arg.copy(this.out, this.pos);
        this.crlf();
      }
    }
  }

  /** A bulk string of UTF-8 text. */
  private text(arg: string): void {
    const length = Buffer.byteLength(arg, 'utf8');
    this.header(0x24, length);
    this.reserve(length + 2);
    this.pos += this.out.write(arg, this.pos, length, 'utf8');
    this.crlf();
  }

  /** A bulk string of a number's decimal digits. */
  private integer(n: number): void {
    const text = String(n);
    this.header(0x24, text.length);
    this.reserve(text.length + 2);
    this.pos += this.out.write(text, this.pos, text.length, 'latin1');
    this.crlf();
  }

  /** A bulk string of the bytes base64 text encodes, decoded in place. */
  private base64(text: string): void {
    const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
    const length = Math.floor(((text.length - padding) * 3) / 4);
    this.header(0x24, length);
    this.reserve(length + 2);
    const written = this.out.write(text, this.pos, length, 'base64');
    // Node skips characters that are not base64: fewer bytes than announced come out.
    if (written !== length)
      throw new RedisBackupError('REDIS_BACKUP_INVALID', 'a base64 value of the export does not decode: the export is damaged');
    this.pos += written;
    this.crlf();
  }

  /**
   * A bulk string of the bytes that base64 text (`start` to `end` of `data`) encodes. Node's
   * decoder (native, several times faster than decoding in JavaScript) takes a string; a
   * short-lived one-byte copy of the text is the cheapest way in.
   */
  private base64From(data: Buffer, start: number, end: number): void {
    // Node's encoder pads: padded text is a multiple of 4 long, and then any character the
    // decoder skips (it skips what is not base64) makes fewer bytes than announced.
    if ((end - start) % 4 !== 0)
      throw new RedisBackupError('REDIS_BACKUP_INVALID', 'a base64 value of the export does not decode: the export is damaged');
    this.base64(data.toString('latin1', start, end));
  }

  /** Bytes already in RESP (the fixed parts of a command). */
  private raw(bytes: Buffer): void {
    this.reserve(bytes.length);
    this.out.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** The CRLF after a bulk string (room for it is reserved with the string). */
  private crlf(): void {
    this.out[this.pos++] = CRLF_0;
    this.out[this.pos++] = 0x0a;
  }

  /** The encoded commands (a view: the batch must not be reused after it was sent). */
  take(): Buffer {
    return this.out.subarray(0, this.pos);
  }

  /** `<type><n>\r\n` */
  private header(type: number, n: number): void {
    this.reserve(24);
    const out = this.out;
    out[this.pos++] = type;
    if (n < 10) out[this.pos++] = 0x30 + n;
    else this.pos += out.write(String(n), this.pos, 'latin1');
    out[this.pos++] = CRLF_0;
    out[this.pos++] = 0x0a;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.out.length) return;
    let size = this.out.length * 2;
    while (size < this.pos + n) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.out.copy(bigger, 0, 0, this.pos);
    this.out = bigger;
  }
}

/** One command in RESP, for a connection that writes its own bytes (the replication handshake). */
export function encodeCommand(args: readonly RespArg[]): Buffer {
  const batch = new RespBatch(256);
  batch.command(args);
  return batch.take();
}

/** Options of {@link openResp}. */
export interface OpenRespOptions {
  /** Shown in CLIENT LIST. */
  name?: string;
  /** No reply for this long while replies are due → REDIS_TIMEOUT. @default 60000 */
  timeoutMs?: number;
  /** Not connected (and logged in) after this long → REDIS_UNREACHABLE. @default 10000 */
  connectTimeoutMs?: number;
}

/** A connection that runs batches of commands, pipelined (see {@link openResp}). */
export interface RespConnection {
  /**
   * Sends a batch and resolves with one reply per command, in order; error replies are
   * {@link RespError}s in place. Several batches may be in flight at once.
   * @throws RedisBackupError when the connection fails (its code says how)
   */
  exec(batch: RespBatch): Promise<RespReply[]>;
  /**
   * Like {@link exec}, but the replies are not built: their bytes come back, for
   * {@link parseReplies} when they are needed. Replies waiting in a queue then cost one
   * buffer instead of thousands of small objects that the garbage collector copies each time
   * it runs (which also makes V8 grow its young generation, and the process's memory).
   * @throws RedisBackupError when the connection fails (its code says how)
   */
  execRaw(batch: RespBatch): Promise<Buffer>;
  /** Sends one command and returns its reply; an error reply is thrown. */
  call(...args: RespArg[]): Promise<RespReply>;
  /** Closes the connection (after the replies in flight, unless it already failed). */
  close(): Promise<void>;
}

/** Incomplete: wait for more bytes. */
const MORE = Symbol('more');
/** The header of an array was read: its elements come next. */
const OPENED = Symbol('opened');
/** A reply (or element) read without being built: its bytes are kept instead. */
const SKIPPED = Symbol('skipped');

/** An array reply whose elements are still arriving. */
interface OpenArray {
  items: RespReply[];
  remaining: number;
}

/**
 * Reads RESP replies from the reads of a socket, resuming where the last read ended: inside
 * the arrays being filled (so a reply of thousands of elements over many reads is parsed
 * once, not again from its start on every read), and gathering the reads of a long bulk
 * string until all of it is in, to join them once. A reply can be built, or only walked
 * through with its bytes kept (see {@link RespConnection.execRaw}).
 */
class ReplyReader {
  #input: Buffer = Buffer.alloc(0);
  #offset = 0;
  readonly #open: OpenArray[] = [];
  #gathered: Buffer[] = [];
  #gatheredBytes = 0;
  #needed = 0;
  // Where the kept bytes of the replies being walked through start in #input (-1: none kept),
  // and those already cut from earlier inputs.
  #rawFrom = -1;
  #raw: Buffer[] = [];
  readonly #where: string;

  constructor(where: string) {
    this.#where = where;
  }

  /** Takes the next read; false while a long bulk string is still being gathered. */
  push(chunk: Buffer): boolean {
    if (this.#needed > 0) {
      this.#gathered.push(chunk);
      this.#gatheredBytes += chunk.length;
      if (this.#gatheredBytes < this.#needed) return false;
      this.#input = Buffer.concat(this.#gathered, this.#gatheredBytes);
      this.#gathered = [];
      this.#gatheredBytes = 0;
      this.#needed = 0;
    } else {
      this.#keepRaw();
      this.#input = this.#offset < this.#input.length ? Buffer.concat([this.#input.subarray(this.#offset), chunk]) : chunk;
    }
    this.#offset = 0;
    return true;
  }

  /** After a pass that stopped for want of bytes: a long bulk string is gathered from here. */
  pause(): void {
    if (this.#needed === 0) return;
    this.#keepRaw();
    const rest = this.#input.subarray(this.#offset);
    this.#gathered = [rest];
    this.#gatheredBytes = rest.length;
  }

  /** Bytes after the last complete reply. */
  get leftover(): boolean {
    return this.#offset < this.#input.length || this.#needed > 0;
  }

  /**
   * The next complete reply, built; or with `raw`, walked through and SKIPPED (its bytes are
   * kept for {@link takeRaw}). MORE when it has not all arrived.
   */
  next(raw: boolean): RespReply | typeof MORE | typeof SKIPPED {
    if (raw && this.#rawFrom < 0) this.#rawFrom = this.#offset;
    const open = this.#open;
    for (;;) {
      let value = this.#element(raw);
      if (value === MORE) return MORE;
      if (value === OPENED) continue;
      // A finished element completes its array, which may complete the one around it.
      while (open.length > 0) {
        const top = open[open.length - 1] as OpenArray;
        if (!raw) top.items.push(value as RespReply);
        if (--top.remaining > 0) break;
        open.pop();
        value = raw ? SKIPPED : top.items;
      }
      if (open.length === 0) return value;
    }
  }

  /** The bytes of the replies walked through since the last call (complete replies only). */
  takeRaw(): Buffer {
    this.#keepRaw();
    this.#rawFrom = -1;
    const parts = this.#raw;
    this.#raw = [];
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  /** Cuts the kept bytes out of the input before the input is replaced. */
  #keepRaw(): void {
    if (this.#rawFrom < 0) return;
    if (this.#offset > this.#rawFrom) this.#raw.push(this.#input.subarray(this.#rawFrom, this.#offset));
    // The next input starts at the current offset.
    this.#rawFrom = 0;
  }

  /**
   * Reads the next element at the offset: a whole scalar (SKIPPED when `raw`), or the header
   * of an array (pushed on the open arrays). MORE, with the offset unchanged, when it is not
   * all here.
   */
  #element(raw: boolean): RespReply | typeof MORE | typeof OPENED | typeof SKIPPED {
    const input = this.#input;
    const offset = this.#offset;
    const end = input.indexOf(CRLF_0, offset);
    if (end < 0 || end + 1 >= input.length) return MORE;
    const type = input[offset];
    this.#offset = end + 2;
    switch (type) {
      case 0x24 /* $ */:
        {
          const length = Number(input.toString('latin1', offset + 1, end));
          if (length < 0) return raw ? SKIPPED : null;
          if (end + 2 + length + 2 > input.length) {
            this.#offset = offset;
            this.#needed = end + 2 + length + 2 - offset;
            return MORE;
          }
          this.#offset = end + 2 + length + 2;
          // A view, not a copy: socket reads are fresh buffers that nothing else writes to.
          return raw ? SKIPPED : input.subarray(end + 2, end + 2 + length);
        }
      case 0x2a /* * */:
        {
          const length = Number(input.toString('latin1', offset + 1, end));
          if (length < 0) return raw ? SKIPPED : null;
          if (length === 0) return raw ? SKIPPED : [];
          this.#open.push({ items: [], remaining: length });
          return OPENED;
        }
      case 0x2b /* + */:
        return raw ? SKIPPED : input.toString('latin1', offset + 1, end);
      case 0x2d /* - */:
        return raw ? SKIPPED : new RespError(input.toString('utf8', offset + 1, end));
      case 0x3a /* : */:
        return raw ? SKIPPED : Number(input.toString('latin1', offset + 1, end));
      default:
        this.#offset = offset;
        throw new RedisBackupError(
          'REDIS_PROTOCOL_ERROR',
          `${this.#where} sent a reply that is not RESP (type byte ${type}): is this a Redis server?`,
        );
    }
  }
}

/**
 * Builds the replies of bytes {@link RespConnection.execRaw} returned.
 * @throws RedisBackupError REDIS_PROTOCOL_ERROR when they are not `count` whole replies
 */
export function parseReplies(bytes: Buffer, count: number): RespReply[] {
  const reader = new ReplyReader('the server');
  reader.push(bytes);
  const replies: RespReply[] = [];
  for (let i = 0; i < count; i++) {
    const reply = reader.next(false);
    if (reply === MORE || reply === SKIPPED) break;
    replies.push(reply);
  }
  if (replies.length !== count || reader.leftover)
    throw new RedisBackupError('REDIS_PROTOCOL_ERROR', `the kept replies are not ${count} whole replies`);
  return replies;
}

/**
 * Connects to `target`, logs in and names the connection.
 * @throws RedisBackupError REDIS_CONNECTION_REFUSED, REDIS_UNREACHABLE, REDIS_AUTH_FAILED, REDIS_TIMEOUT
 */
export async function openResp(target: RedisTarget, options: OpenRespOptions = {}): Promise<RespConnection> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
  let connected = false;
  /** How long a reply may take: until logged in, the connect limit covers the whole login. */
  const replyLimit = () => (connected ? timeoutMs : connectTimeoutMs);
  const socket = openSocket(target);
  socket.setNoDelay(true);
  const pending: {
    raw: boolean;
    replies: RespReply[];
    done: number;
    expected: number;
    resolve: (r: RespReply[] | Buffer) => void;
    reject: (e: unknown) => void;
  }[] = [];
  let failure: unknown;
  const reader = new ReplyReader(target.description);

  const fail = (error: unknown) => {
    failure ??= error;
    socket.destroy();
    for (const p of pending.splice(0)) p.reject(failure);
  };

  socket.on('data', (chunk: Buffer) => {
    if (!reader.push(chunk)) return;
    try {
      while (pending.length > 0) {
        const head = pending[0] as (typeof pending)[number];
        const value = reader.next(head.raw);
        if (value === MORE) break;
        if (value !== SKIPPED) head.replies.push(value);
        if (++head.done < head.expected) continue;
        pending.shift();
        head.resolve(head.raw ? reader.takeRaw() : head.replies);
      }
      reader.pause();
    } catch (error) {
      fail(error);
      return;
    }
    if (pending.length === 0 && reader.leftover) {
      fail(new RedisBackupError('REDIS_PROTOCOL_ERROR', `${target.description} sent a reply nothing asked for`));
      return;
    }
    socket.setTimeout(pending.length > 0 ? replyLimit() : 0);
  });
  socket.on('timeout', () =>
    fail(
      connected
        ? new RedisBackupError('REDIS_TIMEOUT', `${target.description} did not answer for ${timeoutMs} ms: is the server overloaded?`)
        : new RedisBackupError(
            'REDIS_UNREACHABLE',
            `${target.description} did not accept a connection and log in within ${connectTimeoutMs} ms: check the host, port and network`,
          ),
    ),
  );
  socket.on('error', (error) => fail(connectionError(target, error)));
  socket.on('close', () =>
    fail(new RedisBackupError('REDIS_UNREACHABLE', `${target.description} closed the connection while replies were due`)),
  );

  const send = async <T extends RespReply[] | Buffer>(batch: RespBatch, raw: boolean): Promise<T> => {
    if (failure) throw failure;
    const replies = new Promise<T>((resolve, reject) => {
      pending.push({ raw, replies: [], done: 0, expected: batch.count, resolve: resolve as (r: RespReply[] | Buffer) => void, reject });
    });
    socket.setTimeout(replyLimit());
    if (!socket.write(batch.take()))
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done).on('close', done);
      });
    return replies;
  };
  const exec = async (batch: RespBatch): Promise<RespReply[]> => (batch.count === 0 ? [] : send<RespReply[]>(batch, false));
  const execRaw = async (batch: RespBatch): Promise<Buffer> => (batch.count === 0 ? Buffer.alloc(0) : send<Buffer>(batch, true));
  const call = async (...args: RespArg[]): Promise<RespReply> => {
    const batch = new RespBatch(256);
    batch.command(args);
    const [reply] = await exec(batch);
    if (reply instanceof RespError) throw reply;
    return reply ?? null;
  };

  // A host that drops packets would otherwise hold the connect for the system's TCP timeout.
  socket.setTimeout(connectTimeoutMs);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(connectionError(target, error));
    const onClose = () => reject(failure ?? new RedisBackupError('REDIS_UNREACHABLE', `${target.description} closed the connection`));
    socket.once(target.tls ? 'secureConnect' : 'connect', () => {
      socket.off('error', onError).off('close', onClose);
      resolve();
    });
    socket.once('error', onError).once('close', onClose);
  }).catch((error: unknown) => {
    socket.destroy();
    throw error;
  });
  try {
    if (target.password !== undefined) {
      const auth = target.username ? ['AUTH', target.username, target.password] : ['AUTH', target.password];
      await call(...auth).catch((error: unknown) => {
        // Like ioredis: a password the server does not need is not an error.
        if (error instanceof RespError && /without any password configured|no password is set/i.test(error.message)) return;
        throw error instanceof RespError ? connectionError(target, error) : error;
      });
    }
    await call('CLIENT', 'SETNAME', options.name ?? 'drkit').catch((error: unknown) => {
      // A server that hides CLIENT from this user still takes writes.
      if (!(error instanceof RespError) || /NOAUTH/.test(error.message))
        throw error instanceof RespError ? connectionError(target, error) : error;
    });
  } catch (error) {
    socket.destroy();
    throw error;
  }
  connected = true;
  socket.setTimeout(0);

  return {
    exec,
    execRaw,
    call,
    async close() {
      if (failure) return;
      const quit = new RespBatch(64);
      quit.command(['QUIT']);
      await exec(quit).catch(() => {});
      failure = new RedisBackupError('REDIS_UNREACHABLE', `the connection to ${target.description} was closed`);
      socket.destroy();
    },
  };
}
