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

function extract(segment) {
  const bytes = Buffer.from(segment.data);
  const parts = segment.frames.map(([offset, length, tarLength]) => {
    try {
      return decompress(segment.compression, bytes.subarray(offset, offset + length), tarLength);
    } catch (error) {
      throw new Refusal('undecodable', '', error.message);
    }
  });
  const tar = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  let written = 0;
  for (const entry of segment.entries) {
    const reader = new TarHeaderReader();
    let at = entry.start - segment.tarStart;
    let header;
    try {
      for (;;) {
        if (at + BLOCK > tar.length) throw new Refusal('corrupt', entry.rel, 'the frames end before the entry does');
        const parsed = reader.block(tar.subarray(at, at + BLOCK), segment.tarStart + at);
        at += BLOCK;
        if (parsed.kind === 'entry') {
          header = parsed.entry;
          break;
        }
        if (parsed.kind === 'pax') reader.pax(tar.subarray(at, at + parsed.size));
        if (parsed.kind === 'pax' || parsed.kind === 'skip') at += Math.ceil(parsed.size / BLOCK) * BLOCK;
        else throw new Refusal('corrupt', entry.rel, `no entry at offset ${entry.start}`);
      }
    } catch (error) {
      if (error instanceof TarFormatError) throw new Refusal('corrupt', entry.rel, error.message);
      throw error;
    }
    if (header.path !== (entry.storedAs ?? entry.rel) || header.type !== 'file' || header.size !== entry.size)
      throw new Refusal(
        'corrupt',
        entry.rel,
        `the archive holds ${header.type} ${JSON.stringify(header.path)} (${header.size} bytes) where the index expects this file`,
      );
    const data = tar.subarray(at, at + entry.size);
    if (data.length !== entry.size) throw new Refusal('corrupt', entry.rel, 'the frames end before the entry does');
    const end = segment.tarStart + at + Math.ceil(entry.size / BLOCK) * BLOCK;
    if (end !== entry.end) throw new Refusal('corrupt', entry.rel, `the entry ends at ${end}, the index says ${entry.end}`);
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== entry.sha256) throw new Refusal('hash', entry.rel, actual);
    const fd = openSync(entry.path, CREATE, entry.mode);
    try {
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
      if (entry.chown) fchownSync(fd, entry.uid, entry.gid);
      if (entry.chmod !== undefined) fchmodSync(fd, entry.chmod);
      futimesSync(fd, entry.time, entry.time);
    } finally {
      closeSync(fd);
    }
    written += entry.size;
  }
  return written;
}

parentPort.on('message', (segment) => {
  try {
    const bytes = extract(segment);
    parentPort.postMessage({ t: 'done', id: segment.id, files: segment.entries.length, bytes });
  } catch (error) {
    parentPort.postMessage(
      error instanceof Refusal
        ? { t: 'error', id: segment.id, kind: error.kind, path: error.path, detail: error.message }
        : { t: 'error', id: segment.id, kind: 'io', path: '', detail: String(error?.message ?? error) },
    );
  }
});
