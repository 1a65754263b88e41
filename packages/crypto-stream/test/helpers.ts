// Shared helpers of the crypto-stream tests. Add to this file; keep each helper self-contained.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { isSealError, SEAL_ERROR_CODES, type SealError, type SealErrorCode } from '../src/index.js';

// ---------------------------------------------------------------------------------------------
// Seeded randomness: failures of randomized tests reproduce from the seed in their message.
// ---------------------------------------------------------------------------------------------

/** A small seeded PRNG (mulberry32). Not for keys: for choosing test cases reproducibly. */
export class Prng {
  readonly seed: number;
  #state: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.#state = this.seed;
  }

  /** Uniform 32-bit unsigned integer. */
  uint32(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`Prng.int(${n})`);
    return Math.floor((this.uint32() / 2 ** 32) * n);
  }

  /** Uniform integer in [min, max] (both included). */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  /** `n` pseudo-random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.uint32() & 0xff;
    return out;
  }
}

/** The seed of a randomized test: `env[name]` (decimal or 0x hex) when set, else `fallback`. */
export function seedFrom(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const value = Number(text.trim());
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, not ${JSON.stringify(text)}`);
  return value >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Byte layout of a sealed stream (format v1), computed independently of src/format.ts so tests
// can aim mutations at fields and records.
// ---------------------------------------------------------------------------------------------

/** A half-open byte range [start, end). */
export interface Span {
  start: number;
  end: number;
}

/** Where each part of a sealed stream lies. */
export interface SealedLayout {
  magic: Span;
  version: number;
  aead: number;
  compression: number;
  reserved: number;
  chunkSize: Span;
  streamId: Span;
  keyIdLength: number;
  keyId: Span;
  keySource: number;
  /** Offsets of log2N, r, p and the salt, for passphrase streams. */
  scrypt: { log2N: number; r: number; p: number; salt: Span } | undefined;
  wrapNonce: Span;
  wrappedKey: Span;
  mac: Span;
  headerLength: number;
  /** The chunk size the header declares. */
  chunkBytes: number;
  /** chunkSize + 16: the size of every record but the last. */
  recordSize: number;
  /** The records after the header, in order; the last one is the final (shorter) record. */
  records: (Span & { body: Span; tag: Span; final: boolean })[];
}

const TAG = 16;

/** Parses the layout of a well-formed sealed stream. @throws Error when it is not one */
export function layoutOf(sealed: Buffer): SealedLayout {
  const span = (start: number, length: number): Span => ({ start, end: start + length });
  if (sealed.length < 33 || !sealed.subarray(0, 8).equals(Buffer.from('DRKSEAL\0', 'latin1'))) throw new Error('not a sealed stream');
  const keyIdLength = sealed.readUInt8(32);
  const keyId = span(33, keyIdLength);
  const keySource = keyId.end;
  let at = keySource + 1;
  let scrypt: SealedLayout['scrypt'];
  const kind = sealed.readUInt8(keySource);
  if (kind === 2) {
    scrypt = { log2N: at, r: at + 1, p: at + 2, salt: span(at + 3, 16) };
    at += 3 + 16;
  } else if (kind !== 1) {
    throw new Error(`unknown key source ${kind}`);
  }
  const wrapNonce = span(at, 12);
  const wrappedKey = span(wrapNonce.end, 48);
  const mac = span(wrappedKey.end, 32);
  const headerLength = mac.end;
  const chunkBytes = sealed.readUInt32BE(12);
  const recordSize = chunkBytes + TAG;
  const records: SealedLayout['records'] = [];
  for (let start = headerLength; start < sealed.length; start += recordSize) {
    const end = Math.min(start + recordSize, sealed.length);
    records.push({ start, end, body: { start, end: end - TAG }, tag: { start: end - TAG, end }, final: end - start < recordSize });
  }
  const last = records.at(-1);
  if (!last?.final || last.end - last.start < TAG) throw new Error('the stream does not end with a final record');
  return {
    magic: span(0, 8),
    version: 8,
    aead: 9,
    compression: 10,
    reserved: 11,
    chunkSize: span(12, 4),
    streamId: span(16, 16),
    keyIdLength: 32,
    keyId,
    keySource,
    scrypt,
    wrapNonce,
    wrappedKey,
    mac,
    headerLength,
    chunkBytes,
    recordSize,
    records,
  };
}

/** The name of the part of the stream that holds byte `at` (e.g. "mac", "chunk 3 tag"). */
export function partAt(layout: SealedLayout, at: number): string {
  const inSpan = (s: Span) => at >= s.start && at < s.end;
  if (inSpan(layout.magic)) return 'magic';
  if (at === layout.version) return 'version';
  if (at === layout.aead) return 'aead';
  if (at === layout.compression) return 'compression';
  if (at === layout.reserved) return 'reserved';
  if (inSpan(layout.chunkSize)) return 'chunkSize';
  if (inSpan(layout.streamId)) return 'streamId';
  if (at === layout.keyIdLength) return 'keyIdLength';
  if (inSpan(layout.keyId)) return 'keyId';
  if (at === layout.keySource) return 'keySource';
  if (layout.scrypt) {
    if (at === layout.scrypt.log2N) return 'scrypt.log2N';
    if (at === layout.scrypt.r) return 'scrypt.r';
    if (at === layout.scrypt.p) return 'scrypt.p';
    if (inSpan(layout.scrypt.salt)) return 'scrypt.salt';
  }
  if (inSpan(layout.wrapNonce)) return 'wrapNonce';
  if (inSpan(layout.wrappedKey)) return 'wrappedKey';
  if (inSpan(layout.mac)) return 'mac';
  const index = layout.records.findIndex((r) => at >= r.start && at < r.end);
  const record = layout.records[index];
  if (!record) return 'beyond the end';
  return `chunk ${index}${record.final ? ' (final)' : ''} ${at >= record.tag.start ? 'tag' : 'body'}`;
}

// ---------------------------------------------------------------------------------------------
// Errors and async plumbing.
// ---------------------------------------------------------------------------------------------

/** A short, single-line description of any thrown value, for assertion messages. */
export function describeError(error: unknown): string {
  if (isSealError(error)) return `SealError ${error.code}: ${error.message}`;
  if (error instanceof Error) return `${error.constructor.name}${'code' in error ? ` (${String(error.code)})` : ''}: ${error.message}`;
  return `non-Error thrown: ${String(error)}`;
}

/** True when `error` is a SealError whose code is one of SEAL_ERROR_CODES. */
export function isKnownSealError(error: unknown): error is SealError {
  return isSealError(error) && (SEAL_ERROR_CODES as readonly string[]).includes(error.code);
}

/** What a promise came to: its value, its rejection, or nothing before the deadline. */
export type Outcome<T> = { kind: 'ok'; value: T } | { kind: 'error'; error: unknown } | { kind: 'hang' };

/** Settles `promise` into an {@link Outcome}, giving up (kind "hang") after `ms`. */
export async function settle<T>(promise: Promise<T>, ms: number): Promise<Outcome<T>> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'hang' }), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        (value): Outcome<T> => ({ kind: 'ok', value }),
        (error: unknown): Outcome<T> => ({ kind: 'error', error }),
      ),
      deadline,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Drains an async iterable, keeping every piece it yielded before it ended or threw. */
export async function drain(source: AsyncIterable<Uint8Array>): Promise<{ pieces: Buffer[]; error: unknown; failed: boolean }> {
  const pieces: Buffer[] = [];
  try {
    for await (const piece of source) pieces.push(Buffer.from(piece));
    return { pieces, error: undefined, failed: false };
  } catch (error) {
    return { pieces, error, failed: true };
  }
}

/** Yields `bytes` in pieces of `size` bytes (the last one shorter), to exercise buffering. */
export async function* inPieces(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, Math.min(at + size, bytes.length));
}

/** Runs `body` with a fresh temp directory that is removed afterwards, whatever happens. */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'crypto-stream-test-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// SHA-256 in a worker thread, so hashing tens of GiB does not compete with the main thread.
// ---------------------------------------------------------------------------------------------

const HASH_WORKER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hash = createHash('sha256');
let bytes = 0;
parentPort.on('message', (message) => {
  if (message.bytes) {
    hash.update(message.bytes);
    bytes += message.bytes.byteLength;
    parentPort.postMessage({ ack: true });
  } else {
    parentPort.postMessage({ hex: hash.digest('hex'), bytes });
  }
});
`;

/**
 * A running SHA-256 computed in a worker thread, fed in order. Bytes backed by a
 * SharedArrayBuffer are shared (they must not change until {@link digest} resolves); a Buffer
 * that owns its whole ArrayBuffer is transferred (it is detached afterwards); anything else is
 * copied. `update` waits while more than `maxInFlight` pieces are queued, bounding memory.
 */
export class WorkerSha256 {
  readonly #worker = new Worker(HASH_WORKER, { eval: true });
  readonly #maxInFlight: number;
  #inFlight = 0;
  #waiters: (() => void)[] = [];
  #result: ((digest: { hex: string; bytes: number }) => void) | undefined;
  #failure: unknown;

  constructor(maxInFlight = 4) {
    this.#maxInFlight = maxInFlight;
    this.#worker.on('message', (message: { ack?: true; hex?: string; bytes?: number }) => {
      if (message.ack) {
        this.#inFlight--;
        this.#waiters.shift()?.();
      } else if (message.hex !== undefined) {
        this.#result?.({ hex: message.hex, bytes: message.bytes ?? 0 });
      }
    });
    this.#worker.on('error', (error) => {
      this.#failure = error;
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  /** Queues `bytes` to be hashed after everything queued before. */
  async update(bytes: Uint8Array): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (bytes.buffer instanceof SharedArrayBuffer) {
      this.#worker.postMessage({ bytes });
    } else if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.byteLength > 0) {
      this.#worker.postMessage({ bytes }, [bytes.buffer]);
    } else {
      const copy = new Uint8Array(bytes);
      this.#worker.postMessage({ bytes: copy }, [copy.buffer]);
    }
    this.#inFlight++;
    while (this.#inFlight > this.#maxInFlight && !this.#failure) await new Promise<void>((wake) => this.#waiters.push(wake));
    if (this.#failure) throw this.#failure;
  }

  /** The hex digest and byte count of everything queued; stops the worker. */
  async digest(): Promise<{ hex: string; bytes: number }> {
    if (this.#failure) throw this.#failure;
    const result = new Promise<{ hex: string; bytes: number }>((resolve, reject) => {
      this.#result = resolve;
      this.#worker.once('error', reject);
    });
    this.#worker.postMessage({ end: true });
    try {
      return await result;
    } finally {
      await this.#worker.terminate();
    }
  }

  /** Stops the worker without a digest (for cleanup after a failure). */
  async close(): Promise<void> {
    await this.#worker.terminate();
  }
}

/** The codes a test accepts for one case. */
export type ExpectedCodes = readonly SealErrorCode[];
