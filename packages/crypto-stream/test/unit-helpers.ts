// Shared helpers of the crypto-stream unit tests (seal, open, keys, rotate, secrets, files,
// digest, compression). Nothing here touches the console or the process environment.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, onTestFinished } from 'vitest';
import { inspectSealed, isSealError, type MasterKey, masterKey, type SealError, type SealErrorCode } from '../src/index.js';

/** AES-GCM tag length: every chunk record is its ciphertext and a 16-byte tag. */
export const TAG = 16;
/** The smallest chunk size, used to get many chunks out of small inputs. */
export const SMALL_CHUNK = 64;
/** The default chunk size (1 MiB). */
export const MiB = 1024 * 1024;
/** Bytes of every header: fixed fields, stream id, id length, nonce, wrapped key and MAC. */
export const HEADER_FIXED = 16 + 16 + 1 + 12 + 48 + 32;

/** A deterministic 32-byte key for `seed` (tests compare ids and ciphertexts across calls). */
export function keyBytes(seed: number): Buffer {
  return createHash('sha256').update(`crypto-stream test key ${seed}`).digest();
}

/** A deterministic master key for `seed`, with its derived id unless one is given. */
export function testKey(seed: number, id?: string): MasterKey {
  return masterKey(keyBytes(seed), id);
}

/** The header length a stream sealed with this key id and key source has. */
export function expectedHeaderLength(keyId: string, source: 'raw' | 'scrypt'): number {
  return HEADER_FIXED + Buffer.byteLength(keyId) + (source === 'raw' ? 1 : 1 + 3 + 16);
}

/** Incompressible bytes. */
export function randomData(n: number): Buffer {
  return randomBytes(n);
}

const WORDS = ['alpha', 'backup', 'restore', 'postgres', 'redis', 'chunk', 'seal', 'header', 'rotate', 'keyring', 'manifest', 'wal'];

/** Deterministic, compressible text of exactly `n` bytes (ASCII words, numbers and newlines). */
export function textData(n: number, seed = 7): Buffer {
  const parts: string[] = [];
  let length = 0;
  let x = seed >>> 0;
  while (length < n) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const word = `${WORDS[(x >>> 8) % WORDS.length]}${x % 5 === 0 ? ` ${x % 9973}` : ''}${x % 11 === 0 ? '\n' : ' '}`;
    parts.push(word);
    length += word.length;
  }
  return Buffer.from(parts.join('').slice(0, n), 'latin1');
}

/** Collects an async iterable of bytes into one Buffer. */
export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

/**
 * `data` as an async iterable of small Uint8Array pieces (sizes cycling through `sizes`), each
 * a copy that is not a Buffer, so callers must convert.
 */
export async function* tinyPieces(data: Uint8Array, sizes: readonly number[] = [1, 2, 3, 5, 7, 11]): AsyncGenerator<Uint8Array> {
  let at = 0;
  let i = 0;
  while (at < data.length) {
    const n = sizes[i++ % sizes.length] ?? 1;
    yield new Uint8Array(data.subarray(at, at + n));
    at += n;
  }
}

/** Cuts `data` into pieces of `size` bytes (the last may be shorter). */
export function split(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) out.push(data.subarray(at, at + size));
  return out;
}

/** Awaits a rejection that must be a SealError of `code`, and returns it for further checks. */
export async function expectSealError(promise: Promise<unknown>, code: SealErrorCode): Promise<SealError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a rejection with ${code}`).toBeDefined();
  expect(isSealError(caught), `expected a SealError, got ${String(caught)}`).toBe(true);
  const error = caught as SealError;
  expect(error.code, error.message).toBe(code);
  expect(error.name).toBe('SealError');
  return error;
}

/** Reads an async iterable to its end, discarding what it yields. */
export async function drain(source: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of source);
}

/** A fresh temp dir, removed when the current test finishes. */
export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'drkit-crypto-stream-test-'));
  onTestFinished(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Writes `data` to a file in a fresh temp dir and returns a read stream of it. */
export async function fileStream(data: Uint8Array, highWaterMark = 1000): Promise<ReadStream> {
  const path = join(await tempDir(), 'input.bin');
  await writeFile(path, data);
  return createReadStream(path, { highWaterMark });
}

/** What the layout of a sealed stream says: header length, number of chunks, content bytes. */
export async function layoutOf(sealed: Buffer): Promise<{ headerLength: number; chunkSize: number; chunks: number; content: number }> {
  const { headerLength, chunkSize } = await inspectSealed(sealed);
  const body = sealed.length - headerLength;
  // Every chunk but the last is full-size; the last is shorter (possibly empty).
  const chunks = Math.floor(body / (chunkSize + TAG)) + 1;
  return { headerLength, chunkSize, chunks, content: body - TAG * chunks };
}

/** Resolves after the pending I/O callbacks have run (stream 'close' events and the like). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 20));
}

/**
 * `promise`, or a rejection when it has not settled within `ms`: for operations that must
 * finish quickly, so that a hang fails one test fast instead of the whole file at the timeout.
 */
export function within<T>(promise: Promise<T>, ms = 2000, what = 'the operation'): Promise<T> {
  promise.catch(() => {});
  // Once an operation has hung, later tests of the same file fail at once instead of waiting.
  if (hung.has(what)) return Promise.reject(new Error(`${what} hung in an earlier test of this file; not waiting again`));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      hung.add(what);
      reject(new Error(`${what} did not settle within ${ms} ms (it hangs)`));
    }, ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

const hung = new Set<string>();
