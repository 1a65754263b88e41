// An extraction thread of a file restore (see src/extract-threads.ts): it takes segments of an
// archive already fetched and authenticated by the main thread, decompresses their frames,
// checks each tar header against the index, writes the files with their SHA-256 checked, and
// sets owner, mode and mtime. Plain JavaScript with only Node built-ins, the package's tar
// module (its URL comes in workerData) and crypto-stream's reclaimer, so that the same file
// serves sources and builds.
import { createHash } from 'node:crypto';
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, openSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import zlib from 'node:zlib';

const { BLOCK, TarFormatError, TarHeaderReader } = await import(workerData.tarModule);
const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

class Refusal extends Error {
  constructor(kind, path, detail) {
    super(detail);
    this.kind = kind;
    this.path = path;
  }
}

// Every message brings a fresh compressed buffer and its tar comes out in fresh ones, all
// outside the JS heap and dead once it is handled: a young collection every 4 MiB (two such
// threads, and the main thread, each hold their own) frees them while their pages are warm.
const { periodicFullCollector, reclaimer, releaseBuffer } = await import('@drkit/crypto-stream/reclaim');
const reclaim = reclaimer(true, 4 * 1024 * 1024);
// A segment's buffers live across the awaits of its decompression, long enough to be promoted
// out of the young generation; V8 then lets each thread gather tens of MB of them before a
// full collection. One every 500 ms (a few ms on this small heap) took ~20 MB off the peak.
// Better still, a segment's own buffers (its compressed frames, their tar, the decoder's
// filled output blocks) are released the moment it is written: that took another ~10 MB off
// each thread's peak, and ~20 MB off a 500 MB restore's. What is left is mostly the decoder's
// part-filled output blocks, which it keeps writing into and which only a collection can free:
// one every 200 ms instead of 500 took another 4-8 MB off (6 interleaved pairs), at no
// difference in time that this noisy machine could show.
const collectFully = periodicFullCollector(200);

/**
 * One decompressor per compression for the thread's life, fed frame after frame. zlib's
 * one-shot calls (zstdDecompressSync, gunzipSync) make a native context per call that only a
 * full collection frees — for zstd over a megabyte each (its window): two threads held
 * ~170 MB of them in a 500 MB restore. Each frame (zstd frame, gzip member) is a write of its
 * own: zlib's stream ends itself when a frame ends inside a write with input left over.
 */
const decoders = new Map();
/**
 * The decoder's output blocks. A block it is still filling lives on after the segment is done
 * (only a collection frees it), so smaller blocks leave less behind: 256 KiB instead of 1 MiB
 * took ~6 MB off a 500 MB restore's peak (9 interleaved pairs) and a fifth of its page faults,
 * at no difference in time this machine could show.
 */
const DECODER_CHUNK = 256 * 1024;

/** The tar bytes of whole frames (`[offset, length]` in `data`): written one by one, then flushed. */
function inflate(compression, data, frames) {
  let decoder = decoders.get(compression);
  if (!decoder) {
    decoder =
      compression === 'zstd' ? zlib.createZstdDecompress({ chunkSize: DECODER_CHUNK }) : zlib.createGunzip({ chunkSize: DECODER_CHUNK });
    decoders.set(compression, decoder);
  }
  return new Promise((resolve, reject) => {
    const out = [];
    const onData = (piece) => out.push(piece);
    const onError = (error) => {
      // A decoder that failed holds a broken state: the next message gets a new one.
      decoders.delete(compression);
      decoder.off('data', onData);
      reject(error);
    };
    decoder.on('data', onData);
    decoder.once('error', onError);
    for (const [offset, length] of frames) decoder.write(data.subarray(offset, offset + length));
    decoder.flush(() => {
      decoder.off('data', onData);
      decoder.off('error', onError);
      if (out.length === 1) return resolve(out[0]);
      const tar = Buffer.concat(out);
      // Only whole output blocks go: the decoder has moved on to a new one and still writes
      // into the block a shorter piece is part of.
      for (const piece of out) releaseBuffer(piece);
      resolve(tar);
    });
  });
}

/** The tar bytes of the frames a message carries. */
async function tarOf(message) {
  const bytes = Buffer.from(message.data);
  let tar;
  try {
    tar = await inflate(message.compression, bytes, message.frames);
  } catch (error) {
    throw new Refusal('undecodable', '', error.message);
  }
  const lengths = message.frames.map(([, , tarLength]) => tarLength);
  if (lengths.every((n) => n !== undefined)) {
    const expected = lengths.reduce((a, b) => a + b, 0);
    if (tar.length !== expected)
      throw new Refusal('undecodable', '', `the frames decompress to ${tar.length} bytes, the archive's table says ${expected}`);
  }
  reclaim(bytes.length + tar.length);
  collectFully();
  return tar;
}

function writeAll(fd, data) {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
}

/** Owner, mode and times of a written file (the descriptor is closed by the caller). */
function finish(fd, entry) {
  if (entry.chown) fchownSync(fd, entry.uid, entry.gid);
  if (entry.chmod !== undefined) fchmodSync(fd, entry.chmod);
  futimesSync(fd, entry.time, entry.time);
}

/**
 * One file of the archive, fed tar bytes in order (all at once for a small file, part by part
 * for a large one): its header is parsed from the bytes at entry.start and checked against the
 * index, then its content is written and hashed; close() checks the SHA-256 and sets owner,
 * mode and mtime.
 */
class EntryWriter {
  constructor(entry) {
    this.entry = entry;
    this.reader = new TarHeaderReader();
    this.head = Buffer.alloc(0);
    this.headAt = entry.start;
    this.fd = undefined;
    this.hash = createHash('sha256');
    this.left = entry.size;
  }

  /** Takes tar bytes starting at tar offset `at`. */
  feed(tar, at) {
    if (this.fd === undefined) {
      // Header blocks: gather bytes from entry.start until the entry's own header is parsed.
      if (at + tar.length <= this.entry.start) return;
      const from = Math.max(0, this.entry.start - at);
      this.head = this.head.length === 0 ? tar.subarray(from) : Buffer.concat([this.head, tar.subarray(from)]);
      tar = Buffer.alloc(0);
      let offset = 0;
      let header;
      try {
        while (!header && offset + BLOCK <= this.head.length) {
          const parsed = this.reader.block(this.head.subarray(offset, offset + BLOCK), this.headAt + offset);
          if (parsed.kind === 'entry') {
            header = parsed.entry;
            offset += BLOCK;
            break;
          }
          if (parsed.kind === 'pax' || parsed.kind === 'skip') {
            const padded = Math.ceil(parsed.size / BLOCK) * BLOCK;
            if (offset + BLOCK + padded > this.head.length) break; // the rest of it is in the next part
            if (parsed.kind === 'pax') this.reader.pax(this.head.subarray(offset + BLOCK, offset + BLOCK + parsed.size));
            offset += BLOCK + padded;
          } else throw new Refusal('corrupt', this.entry.rel, `no entry at offset ${this.entry.start}`);
        }
      } catch (error) {
        if (error instanceof TarFormatError) throw new Refusal('corrupt', this.entry.rel, error.message);
        throw error;
      }
      if (!header) {
        // Parsing restarts from the first block once more bytes have come.
        this.reader = new TarHeaderReader();
        return;
      }
      const entry = this.entry;
      if (header.path !== (entry.storedAs ?? entry.rel) || header.type !== 'file' || header.size !== entry.size)
        throw new Refusal(
          'corrupt',
          entry.rel,
          `the archive holds ${header.type} ${JSON.stringify(header.path)} (${header.size} bytes) where the index expects this file`,
        );
      const end = this.headAt + offset + Math.ceil(entry.size / BLOCK) * BLOCK;
      if (end !== entry.end) throw new Refusal('corrupt', entry.rel, `the entry ends at ${end}, the index says ${entry.end}`);
      this.fd = openSync(entry.path, CREATE, entry.mode);
      tar = this.head.subarray(offset);
      this.head = undefined;
    }
    const data = tar.subarray(0, Math.min(tar.length, this.left));
    this.hash.update(data);
    writeAll(this.fd, data);
    this.left -= data.length;
  }

  close() {
    try {
      if (this.fd === undefined || this.left > 0) throw new Refusal('corrupt', this.entry.rel, 'the frames end before the entry does');
      const actual = this.hash.digest('hex');
      if (actual !== this.entry.sha256) throw new Refusal('hash', this.entry.rel, actual);
      finish(this.fd, this.entry);
    } finally {
      this.abandon();
    }
  }

  /** Closes the file, once, whatever happened. */
  abandon() {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Large files being received, by job id. */
const large = new Map();

async function extract(segment) {
  const tar = await tarOf(segment);
  let written = 0;
  for (const entry of segment.entries) {
    const file = new EntryWriter(entry);
    try {
      file.feed(tar, segment.tarStart);
      file.close();
    } catch (error) {
      file.abandon();
      throw error;
    }
    written += entry.size;
  }
  releaseBuffer(segment.data);
  releaseBuffer(tar);
  return written;
}

async function handle(message) {
  if (message.t === 'segment') return { t: 'done', id: message.id, files: message.entries.length, bytes: await extract(message) };
  if (message.t === 'open') {
    large.set(message.id, new EntryWriter(message.entry));
    return { t: 'ack', id: message.id };
  }
  const file = large.get(message.id);
  if (!file) return { t: 'ack', id: message.id };
  if (message.t === 'part') {
    const tar = await tarOf(message);
    file.feed(tar, message.tarStart);
    releaseBuffer(message.data);
    // A header cut by the part's end is kept as a view of it until the next part comes.
    if (file.head === undefined) releaseBuffer(tar);
    return { t: 'ack', id: message.id };
  }
  large.delete(message.id);
  file.close();
  return { t: 'done', id: message.id, files: 1, bytes: file.entry.size };
}

/** Handles one message and answers it; messages are handled one at a time, in order. */
async function answer(message) {
  try {
    parentPort.postMessage(await handle(message));
  } catch (error) {
    // A failed large file stops here: later parts of it are acknowledged and dropped.
    large.get(message.id)?.abandon();
    large.delete(message.id);
    parentPort.postMessage(
      error instanceof Refusal
        ? { t: 'error', id: message.id, kind: error.kind, path: error.path, detail: error.message }
        : { t: 'error', id: message.id, kind: 'io', path: '', detail: String(error?.message ?? error) },
    );
  }
}

let queue = Promise.resolve();
parentPort.on('message', (message) => {
  queue = queue.then(() => answer(message));
});
