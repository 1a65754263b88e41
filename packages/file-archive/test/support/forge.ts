// Writes file backups the way an attacker holding the key (or a faulty writer) could: any
// entries, in any order, with an index and a tar stream that need not agree. It uses the
// package's own writers (tar headers, frames, index, sealing), so a backup that restores is
// exactly what backupFiles would have produced for the same tree, and a refusal is a refusal
// of the entries, not of a malformed archive.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { seal, sealingKeyId } from '@drkit/crypto-stream';
import { type Catalog, type Manifest, newArtifactId } from '@drkit/s3-store';
import type { FilesFingerprint, FilesKeys } from '../../src/archive.js';
import { type ArchiveCompression, compressFrame, DEFAULT_ARCHIVE_LEVELS } from '../../src/frames.js';
import { END_OF_ARCHIVE, encodeHeader, padding, type TarType } from '../../src/tar.js';
import { compactFrame, encodeIndex, type FilesIndex, INDEX_FORMAT, type IndexEntry } from '../../src/tree-index.js';

/** One entry of a forged backup: what the index says, and (independently) what the tar holds. */
export interface ForgedEntry {
  /** The path in the index (and, unless `tar.path` says otherwise, in the tar header). */
  path: string;
  /** @default "file" */
  type?: TarType;
  /** File content; the index's size and SHA-256 are computed from it unless overridden. */
  content?: string | Buffer;
  /** Symlink target or hard-link source. */
  link?: string;
  /** @default 0o644 for files, 0o755 for directories, 0o777 for the rest */
  mode?: number;
  /** Modification time in nanoseconds. @default 2001-09-09T01:46:40Z */
  mtimeNs?: bigint;
  /** The SHA-256 the index records, instead of the content's. */
  sha256?: string;
  /** What the tar header and data hold instead; `false` writes no tar entry at all. */
  tar?: false | { path?: string; type?: TarType; content?: string | Buffer; link?: string };
}

export interface ForgeSpec {
  entries: ForgedEntry[];
  /** @default "zstd" */
  compression?: ArchiveCompression;
  /** The directory the backup claims to be of. @default "/srv/forged" */
  dir?: string;
  host?: string;
}

export const DEFAULT_MTIME_NS = 1_000_000_000_000_000_000n;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const bytes = (content: string | Buffer | undefined) => (typeof content === 'string' ? Buffer.from(content) : (content ?? Buffer.alloc(0)));

/** Stores a forged file backup in `catalog` and returns its manifest. */
export async function forgeBackup(catalog: Catalog, keys: FilesKeys, spec: ForgeSpec): Promise<Manifest> {
  const compression = spec.compression ?? 'zstd';
  const level = DEFAULT_ARCHIVE_LEVELS[compression];
  const dir = spec.dir ?? '/srv/forged';
  const host = spec.host ?? hostname();
  const id = newArtifactId();
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;

  // The tar stream, entry by entry, remembering where each file's entry lies.
  const tar: Buffer[] = [];
  let tarOffset = 0;
  const push = (data: Buffer) => {
    tar.push(data);
    tarOffset += data.length;
  };
  const entries: IndexEntry[] = [];
  let files = 0;
  let fileBytes = 0;
  for (const e of spec.entries) {
    const type = e.type ?? 'file';
    const content = bytes(e.content);
    const mode = e.mode ?? (type === 'file' ? 0o644 : type === 'directory' ? 0o755 : 0o777);
    const mtimeNs = e.mtimeNs ?? DEFAULT_MTIME_NS;
    const start = tarOffset;
    if (e.tar !== false) {
      const tarType = e.tar?.type ?? type;
      const data = e.tar?.content === undefined ? content : bytes(e.tar.content);
      const link = e.tar?.link ?? e.link;
      push(
        encodeHeader({
          path: e.tar?.path ?? e.path,
          type: tarType,
          size: tarType === 'file' ? data.length : 0,
          mode,
          uid,
          gid,
          mtimeNs,
          ...(link === undefined ? {} : { link }),
        }),
      );
      if (tarType === 'file') push(Buffer.concat([data, Buffer.alloc(padding(data.length))]));
    }
    const entry: IndexEntry = {
      path: e.path,
      // The index type is what a reader trusts: forged types go in as they are.
      type: type as IndexEntry['type'],
      size: type === 'file' ? content.length : 0,
      mode,
      uid,
      gid,
      mtime: String(mtimeNs),
      ctime: String(mtimeNs),
      ino: '0',
      ...(e.link === undefined ? {} : { link: e.link }),
    };
    if (type === 'file') {
      entry.sha256 = e.sha256 ?? sha256(content);
      entry.at = [0, start, tarOffset];
      files++;
      fileBytes += content.length;
    }
    entries.push(entry);
  }
  push(END_OF_ARCHIVE);

  // One frame holds the whole tar; the index follows in metadata frames.
  const frame = await compressFrame(compression, Buffer.concat(tar), level);
  const index: FilesIndex = {
    format: INDEX_FORMAT,
    id,
    root: dir,
    createdAt: new Date().toISOString(),
    archives: [{ id, compression, frames: [compactFrame({ offset: 0, length: frame.length, tarOffset: 0 })] }],
    entries,
    changes: { added: [], modified: [], deleted: [], renamed: [], metadata: [] },
  };
  const wrapped = encodeIndex(index, compression);
  const count = (t: string) => entries.filter((x) => x.type === t).length;
  const fingerprint: FilesFingerprint = {
    format: 'drkit-files/1',
    root: dir,
    host,
    compression,
    level,
    files,
    directories: count('directory'),
    symlinks: count('symlink'),
    bytes: fileBytes,
    stored: { files, bytes: fileBytes, tarBytes: tarOffset },
    changes: { added: entries.length, modified: 0, deleted: 0, renamed: 0, metadata: 0 },
    chain: { base: id, length: 1 },
    index: { offset: frame.length, length: wrapped.length, sha256: sha256(wrapped), entries: entries.length },
    unstable: 0,
    skipped: 0,
  };
  return catalog.put({
    id,
    kind: 'files',
    tier: 'manual',
    type: 'full',
    source: { description: `${host}:${dir}`, host },
    tool: { name: 'drkit', version: '0.1.0' },
    compression,
    encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: sealingKeyId(keys) },
    labels: { dir, host },
    plainSize: frame.length + wrapped.length,
    fingerprint: fingerprint as unknown as Record<string, unknown>,
    body: seal(Buffer.concat([frame, wrapped]), { key: keys, compression: 'none' }),
  });
}
