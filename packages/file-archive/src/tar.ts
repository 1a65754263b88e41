// POSIX pax tar (ustar blocks plus a pax extended header per entry), the format GNU tar,
// bsdtar and every tar library read. Every entry gets a pax header so that paths of any
// length and in any script, link targets, sizes past 8 GiB and nanosecond mtimes survive
// exactly; the ustar fields carry a truncated ASCII fallback for readers without pax.

/** Tar's block size: headers and padded data are multiples of it. */
export const BLOCK = 512;

/** An entry as the archive writer and reader see it. */
export interface TarEntry {
  /** Relative path, `/`-separated, without a trailing slash. */
  path: string;
  type: TarType;
  /** Bytes of content (files only; 0 otherwise). */
  size: number;
  /** Permission bits (and setuid/setgid/sticky), not the file type. */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in nanoseconds since the epoch. */
  mtimeNs: bigint;
  /** Symlink target or hard-link source. */
  link?: string;
}

/** Entry types: what drkit writes (file, directory, symlink) and what it recognises to refuse. */
export type TarType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'char-device' | 'block-device' | 'fifo' | 'other';

const TYPE_FLAGS: Record<string, TarType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
};
const FLAG_OF: Partial<Record<TarType, string>> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  'char-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
};

/** Thrown by the parser for bytes that are not a tar header this reader accepts. */
export class TarFormatError extends Error {
  override readonly name = 'TarFormatError';
}

function octal(buffer: Buffer, offset: number, width: number, value: number): void {
  // Values that do not fit are carried by the pax header; the ustar field gets its maximum.
  const max = 8 ** (width - 1) - 1;
  buffer.write(
    Math.min(Math.max(0, Math.floor(value)), max)
      .toString(8)
      .padStart(width - 1, '0'),
    offset,
    width - 1,
    'ascii',
  );
  buffer[offset + width - 1] = 0;
}

function asciiFallback(text: string, bytes: number): string {
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0) as number;
    out += code >= 0x20 && code < 0x7f ? ch : '_';
    if (out.length >= bytes) break;
  }
  return out.slice(0, bytes);
}

function paxRecord(key: string, value: string): Buffer {
  // "%d %s=%s\n" where the length counts itself: try lengths until the digits settle.
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body);
  let length = bodyLength + 1;
  while (String(length).length + bodyLength !== length) length = String(length).length + bodyLength;
  return Buffer.from(`${length}${body}`, 'utf8');
}

function nsToPax(ns: bigint): string {
  const negative = ns < 0n;
  const abs = negative ? -ns : ns;
  const seconds = abs / 1_000_000_000n;
  const fraction = (abs % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${seconds}${fraction ? `.${fraction}` : ''}`;
}

function ustarBlock(entry: TarEntry, name: string, flag: string, size: number): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name, 0, 100, 'utf8');
  octal(block, 100, 8, entry.mode & 0o7777);
  octal(block, 108, 8, entry.uid);
  octal(block, 116, 8, entry.gid);
  octal(block, 124, 12, size);
  octal(block, 136, 12, Number(entry.mtimeNs / 1_000_000_000n));
  block[156] = flag.charCodeAt(0);
  if (entry.link !== undefined) block.write(asciiFallback(entry.link, 100), 157, 100, 'utf8');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  checksum(block);
  return block;
}

function checksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i] as number;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
}

/** Zero bytes that pad `size` bytes of content to a whole block. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/**
 * The header blocks of one entry: a pax extended header (path, link, mtime, size, ids) and the
 * ustar header. Content, then {@link padding} zero bytes, follow for files.
 */
export function encodeHeader(entry: TarEntry): Buffer {
  const flag = FLAG_OF[entry.type];
  if (!flag) throw new TarFormatError(`cannot write a ${entry.type} entry`);
  const name = entry.type === 'directory' ? `${entry.path}/` : entry.path;
  const records = [paxRecord('path', name), paxRecord('mtime', nsToPax(entry.mtimeNs))];
  if (entry.link !== undefined) records.push(paxRecord('linkpath', entry.link));
  if (entry.size > 8 ** 11 - 1) records.push(paxRecord('size', String(entry.size)));
  if (entry.uid > 8 ** 7 - 1) records.push(paxRecord('uid', String(entry.uid)));
  if (entry.gid > 8 ** 7 - 1) records.push(paxRecord('gid', String(entry.gid)));
  const pax = Buffer.concat(records);
  const paxName = asciiFallback(`PaxHeaders/${name.split('/').filter(Boolean).pop() ?? '_'}`, 99);
  const { link: _link, ...plain } = entry;
  const paxHeader = ustarBlock({ ...plain, mode: 0o644 }, paxName, 'x', pax.length);
  return Buffer.concat([
    paxHeader,
    pax,
    Buffer.alloc(padding(pax.length)),
    ustarBlock(entry, asciiFallback(name, 100), flag, entry.type === 'file' ? entry.size : 0),
  ]);
}

/** The two zero blocks that end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

function readOctal(block: Buffer, offset: number, width: number, field: string): number {
  const first = block[offset] as number;
  if (first & 0x80) {
    // GNU base-256 for values past the octal range.
    let value = 0;
    for (let i = 1; i < width; i++) value = value * 256 + (block[offset + i] as number);
    return value;
  }
  const text = block
    .toString('ascii', offset, offset + width)
    .replace(/\0.*$/s, '')
    .trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`bad ${field} field "${text}"`);
  return Number.parseInt(text, 8);
}

function cString(block: Buffer, offset: number, width: number): string {
  const end = block.indexOf(0, offset);
  return block.toString('utf8', offset, end === -1 || end > offset + width ? offset + width : end);
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) throw new TarFormatError('bad pax record');
    const length = Number(data.toString('ascii', at, space));
    if (!Number.isSafeInteger(length) || length <= 0 || at + length > data.length) throw new TarFormatError('bad pax record length');
    const record = data.toString('utf8', space + 1, at + length - 1);
    const eq = record.indexOf('=');
    if (eq === -1) throw new TarFormatError('bad pax record');
    out[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return out;
}

function paxToNs(text: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,9})\d*)?$/.exec(text);
  if (!m) throw new TarFormatError(`bad pax mtime "${text}"`);
  const ns = BigInt(m[2] as string) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0'));
  return m[1] ? -ns : ns;
}

/** What {@link TarParser} yields: an entry and where its content lies in the tar stream. */
export interface ParsedEntry extends TarEntry {
  /** Offset of the first header block of this entry (its pax header, if any). */
  headerOffset: number;
  /** Offset of the content. */
  dataOffset: number;
}

/**
 * An incremental tar header reader: feed it bytes, it says how many it needs next. Content is
 * left to the caller, which skips `size + padding(size)` bytes after each entry.
 */
export class TarHeaderReader {
  #pax: Record<string, string> | undefined;
  #start = -1;
  #zeroBlocks = 0;

  /**
   * Parses one 512-byte block at stream offset `offset`. Returns an entry, `pax` (the block
   * starts a pax header of `size` data bytes that must be passed to {@link pax}), `skip` for
   * a global or unknown extension, or `end` at the end-of-archive marker.
   */
  block(
    block: Buffer,
    offset: number,
  ): { kind: 'entry'; entry: ParsedEntry } | { kind: 'pax' | 'skip'; size: number } | { kind: 'zero' } | { kind: 'end' } {
    if (block.every((b) => b === 0)) {
      this.#zeroBlocks++;
      return this.#zeroBlocks >= 2 ? { kind: 'end' } : { kind: 'zero' };
    }
    this.#zeroBlocks = 0;
    const stored = readOctal(block, 148, 8, 'checksum');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    if (sum !== stored) throw new TarFormatError(`header checksum mismatch at offset ${offset}`);
    if (this.#start === -1) this.#start = offset;
    const flag = String.fromCharCode(block[156] as number);
    const size = readOctal(block, 124, 12, 'size');
    if (flag === 'x') return { kind: 'pax', size };
    if (flag === 'g' || flag === 'L' || flag === 'K') {
      // Global headers and GNU long names are not written by drkit; their entry is refused by type.
      return { kind: 'skip', size };
    }
    const pax = this.#pax ?? {};
    this.#pax = undefined;
    const magic = block.toString('ascii', 257, 262);
    const prefix = magic === 'ustar' ? cString(block, 345, 155) : '';
    const rawName = pax.path ?? (prefix ? `${prefix}/${cString(block, 0, 100)}` : cString(block, 0, 100));
    const type: TarType = TYPE_FLAGS[flag] ?? 'other';
    const entry: ParsedEntry = {
      path: rawName.endsWith('/') ? rawName.slice(0, -1) : rawName,
      type: type === 'file' && rawName.endsWith('/') ? 'directory' : type,
      size: pax.size !== undefined ? Number(pax.size) : size,
      mode: readOctal(block, 100, 8, 'mode') & 0o7777,
      uid: pax.uid !== undefined ? Number(pax.uid) : readOctal(block, 108, 8, 'uid'),
      gid: pax.gid !== undefined ? Number(pax.gid) : readOctal(block, 116, 8, 'gid'),
      mtimeNs: pax.mtime !== undefined ? paxToNs(pax.mtime) : BigInt(readOctal(block, 136, 12, 'mtime')) * 1_000_000_000n,
      headerOffset: this.#start,
      dataOffset: offset + BLOCK,
    };
    const link = pax.linkpath ?? cString(block, 157, 100);
    if (type === 'symlink' || type === 'hardlink') entry.link = link;
    if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new TarFormatError(`bad size at offset ${offset}`);
    this.#start = -1;
    return { kind: 'entry', entry };
  }

  /** Takes the data of a pax extended header announced by {@link block}. */
  pax(data: Buffer): void {
    this.#pax = { ...this.#pax, ...parsePax(data) };
  }
}
