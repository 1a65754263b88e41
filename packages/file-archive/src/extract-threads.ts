import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ArchiveCompression } from './frames.js';

/** One file of a segment, as an extraction thread needs it. */
export interface SegmentFile {
  /** Absolute path in the staging tree, and the path relative to the restore (messages, tar check). */
  path: string;
  rel: string;
  storedAs?: string;
  size: number;
  /** Tar offsets of the entry (headers included) and past its padding, from the index. */
  start: number;
  end: number;
  sha256: string;
  /** Mode to create the file with, and the mode to set afterwards when that differs. */
  mode: number;
  chmod?: number;
  chown: boolean;
  uid: number;
  gid: number;
  /** mtime (and atime) in seconds since the epoch. */
  time: number;
}

/** A run of small files of one archive with the (authenticated, still compressed) frames holding them. */
export interface Segment {
  archive: string;
  compression: ArchiveCompression;
  /** Compressed bytes of the frames, in an ArrayBuffer of their own (it is transferred). */
  data: ArrayBuffer;
  /** Per frame: offset in `data`, compressed length, tar length (when known). */
  frames: [number, number, number | undefined][];
  /** Tar offset of the first frame. */
  tarStart: number;
  files: SegmentFile[];
}

/** Why a thread refused a segment: the main thread turns it into a FilesError. */
export interface SegmentFailure {
  kind: 'corrupt' | 'hash' | 'undecodable' | 'io';
  archive: string;
  path: string;
  detail: string;
}

/**
 * Segments handed to each thread and not yet done: the main thread waits beyond this. One:
 * the next segment is fetched and decrypted while the thread works on this one, and a second
 * queued segment (and its output) only cost memory — ~10 MB of peak RSS in a 500 MB restore.
 */
const QUEUED_PER_THREAD = 1;

/**
 * How many extraction threads a restore of `bytes` bytes uses: none for small restores (a
 * thread costs more to start than it saves), else one per core, at most two (the main thread
 * only fetches and decrypts, a third of a thread's work; past two it becomes the limit).
 */
export function threadCount(bytes: number, requested?: number): number {
  if (requested !== undefined) return Math.max(0, Math.floor(requested));
  return bytes >= 16 * 1024 * 1024 ? Math.min(2, availableParallelism()) : 0;
}

type Reply =
  | { t: 'done'; id: number; files: number; bytes: number }
  | { t: 'error'; id: number; kind: SegmentFailure['kind']; path: string; detail: string };

/**
 * Extraction threads of a large restore. The main thread fetches and authenticates the frames
 * of a segment of small files and hands them over (transferred, not copied); a thread
 * decompresses them, checks every tar header against the index, writes each file with its
 * SHA-256 checked and sets owner, mode and mtime. So decompression, hashing and the file
 * system calls of many small files run on other cores than decryption. The first failure
 * fails the next call; {@link drain} waits for every segment.
 */
export class ExtractThreads {
  readonly #threads: { worker: Worker; queued: number }[] = [];
  readonly #segments = new Map<number, { archive: string }>();
  readonly #waiters: (() => void)[] = [];
  readonly #onDone: (files: number, bytes: number) => void;
  #next = 0;
  #failure: { error: unknown } | undefined;
  readonly #toError: (failure: SegmentFailure) => unknown;

  constructor(count: number, options: { toError: (failure: SegmentFailure) => unknown; onDone: (files: number, bytes: number) => void }) {
    this.#toError = options.toError;
    this.#onDone = options.onDone;
    // The tar module the thread parses headers with: the sources (type-stripped) or the build.
    const tarModule = new URL(import.meta.url.endsWith('.ts') ? './tar.ts' : './tar.js', import.meta.url).href;
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('../worker/extract.mjs', import.meta.url), { workerData: { tarModule } });
      const thread = { worker, queued: 0 };
      worker.on('message', (reply: Reply) => this.#reply(thread, reply));
      worker.on('error', (error) =>
        this.#fail({ kind: 'io', archive: '', path: '', detail: `an extraction thread failed: ${error.message}` }),
      );
      worker.on('exit', (code) => {
        if (this.#segments.size > 0)
          this.#fail({ kind: 'io', archive: '', path: '', detail: `an extraction thread exited (code ${code}) with files unwritten` });
      });
      this.#threads.push(thread);
    }
  }

  /** Hands a segment to the least busy thread; waits while every thread has enough queued. */
  async add(segment: Segment): Promise<void> {
    const thread = await this.#room();
    const id = this.#job(segment.archive);
    const { archive: _archive, files, ...rest } = segment;
    this.#send(thread, { t: 'segment', id, ...rest, entries: files }, segment.data);
  }

  /**
   * Hands a large file to one thread in parts (a few frames each, fetched by `parts` as the
   * thread keeps up): the thread parses its header from the first part, then writes and
   * hashes its content part by part.
   */
  async stream(
    archive: string,
    compression: ArchiveCompression,
    file: SegmentFile,
    parts: AsyncIterable<Omit<Segment, 'archive' | 'compression' | 'files'>>,
  ): Promise<void> {
    let thread = await this.#room();
    const id = this.#job(archive);
    this.#send(thread, { t: 'open', id, entry: file, compression });
    for await (const part of parts) {
      await this.#room(thread);
      this.#send(thread, { t: 'part', id, compression, ...part }, part.data);
    }
    thread = await this.#room(thread);
    this.#send(thread, { t: 'close', id });
  }

  /** A thread with room for one more message (the given one, or the least busy). */
  async #room(only?: { worker: Worker; queued: number }): Promise<{ worker: Worker; queued: number }> {
    this.#check();
    const candidates = only ? [only] : this.#threads;
    while (!this.#failure && candidates.every((t) => t.queued >= QUEUED_PER_THREAD))
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#check();
    return candidates.reduce((a, b) => (b.queued < a.queued ? b : a));
  }

  #job(archive: string): number {
    const id = this.#next++;
    this.#segments.set(id, { archive });
    return id;
  }

  #send(thread: { worker: Worker; queued: number }, message: Record<string, unknown>, transfer?: ArrayBuffer): void {
    thread.queued++;
    thread.worker.postMessage(message, transfer ? [transfer] : []);
  }

  /** Waits until every segment handed over is written and checked. @throws the first failure */
  async drain(): Promise<void> {
    while (this.#segments.size > 0 && !this.#failure) await new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#check();
  }

  /** Stops the threads. */
  async close(): Promise<void> {
    await Promise.all(this.#threads.map((t) => t.worker.terminate()));
  }

  #reply(thread: { queued: number }, reply: Reply): void {
    thread.queued--;
    const job = this.#segments.get(reply.id);
    if (reply.t === 'done') {
      this.#segments.delete(reply.id);
      this.#onDone(reply.files, reply.bytes);
    } else if (reply.t === 'error') {
      this.#segments.delete(reply.id);
      this.#fail({ kind: reply.kind, archive: job?.archive ?? '', path: reply.path, detail: reply.detail });
    }
    for (const wake of this.#waiters.splice(0)) wake();
  }

  #fail(failure: SegmentFailure): void {
    this.#failure ??= { error: this.#toError(failure) };
    for (const wake of this.#waiters.splice(0)) wake();
  }

  #check(): void {
    if (this.#failure) throw this.#failure.error;
  }
}
