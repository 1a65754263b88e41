// An extraction thread of a file restore (see src/extract-threads.ts): it takes segments of an
// archive already fetched and authenticated by the main thread, decompresses their frames,
// checks each tar header against the index, writes the files with their SHA-256 checked, and
// sets owner, mode and mtime. Plain JavaScript with only Node built-ins plus the package's tar
// module (its URL comes in workerData), so that the same file serves sources and builds.
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

function decompress(compression, data, size) {
  // A frame-sized output chunk: zlib hands the output back in one piece.
  const chunkSize = Math.min(8 * 1024 * 1024, Math.max(64 * 1024, (size ?? 4 * data.length) + 1024));
  return compression === 'zstd' ? zlib.zstdDecompressSync(data, { chunkSize }) : zlib.gunzipSync(data, { chunkSize });
}

/** The tar bytes of the frames a message carries. */
function tarOf(message) {
  const bytes = Buffer.from(message.data);
  const parts = message.frames.map(([offset, length, tarLength]) => {
    try {
      return decompress(message.compression, bytes.subarray(offset, offset + length), tarLength);
    } catch (error) {
      throw new Refusal('undecodable', '', error.message);
    }
  });
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
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

function extract(segment) {
  const tar = tarOf(segment);
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
  return written;
}

function handle(message) {
  if (message.t === 'segment') return { t: 'done', id: message.id, files: message.entries.length, bytes: extract(message) };
  if (message.t === 'open') {
    large.set(message.id, new EntryWriter(message.entry));
    return { t: 'ack', id: message.id };
  }
  const file = large.get(message.id);
  if (!file) return { t: 'ack', id: message.id };
  if (message.t === 'part') {
    file.feed(tarOf(message), message.tarStart);
    return { t: 'ack', id: message.id };
  }
  large.delete(message.id);
  file.close();
  return { t: 'done', id: message.id, files: 1, bytes: file.entry.size };
}

parentPort.on('message', (message) => {
  try {
    parentPort.postMessage(handle(message));
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
});
