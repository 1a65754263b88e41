// PostgreSQL's WAL file names and positions, as the archive reads them. Kept free of any I/O
// so that `drkit wal-push` (an archive_command, started once per segment) loads little.
import { PgBackupError } from './errors.js';

/** The default WAL segment size (initdb --wal-segsize): 16 MiB. */
export const DEFAULT_WAL_SEGMENT_SIZE = 16 * 1024 * 1024;

/** What a file PostgreSQL hands to archive_command is. */
export type WalFileKind = 'segment' | 'partial' | 'backup-label' | 'history';

/** A parsed WAL file name. */
export interface WalName {
  name: string;
  kind: WalFileKind;
  /** The timeline the file belongs to. */
  timeline: number;
  /** `log * segmentsPerLog + seg` of a segment, .partial or .backup file; undefined for a history file. */
  log?: number;
  seg?: number;
}

const SEGMENT = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const PARTIAL = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.partial$/;
const BACKUP_LABEL = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.[0-9A-F]{8}\.backup$/;
const HISTORY = /^([0-9A-F]{8})\.history$/;

/** The parsed name, or undefined for anything that is not a WAL archive file name. */
export function parseWalName(name: string): WalName | undefined {
  const history = HISTORY.exec(name);
  if (history) return { name, kind: 'history', timeline: Number.parseInt(history[1] as string, 16) };
  for (const [kind, pattern] of [
    ['segment', SEGMENT],
    ['partial', PARTIAL],
    ['backup-label', BACKUP_LABEL],
  ] as const) {
    const m = pattern.exec(name);
    if (m)
      return {
        name,
        kind,
        timeline: Number.parseInt(m[1] as string, 16),
        log: Number.parseInt(m[2] as string, 16),
        seg: Number.parseInt(m[3] as string, 16),
      };
  }
  return undefined;
}

/**
 * The parsed name of a file PostgreSQL archives or asks for.
 * @throws PgBackupError PG_WAL_NAME_INVALID for any other name (never a path: no directory part)
 */
export function walName(name: string): WalName {
  const parsed = parseWalName(name);
  if (!parsed)
    throw new PgBackupError(
      'PG_WAL_NAME_INVALID',
      `"${name.slice(0, 80)}" is not a WAL file name (a 24-hex-digit segment, .partial, .backup or .history file); archive_command passes %p and restore_command %f %p`,
    );
  return parsed;
}

/** Segments per 4 GiB "log" of the WAL's position space. */
export function segmentsPerLog(segmentSize: number): number {
  return 0x1_0000_0000 / segmentSize;
}

/** The segment number (position / segment size) of a parsed name with a position. */
export function segmentNumber(name: WalName, segmentSize: number): bigint {
  if (name.log === undefined || name.seg === undefined) throw new Error(`${name.name} has no segment number`);
  return BigInt(name.log) * BigInt(segmentsPerLog(segmentSize)) + BigInt(name.seg);
}

/** The name of segment `segno` on `timeline`. */
export function segmentName(timeline: number, segno: bigint, segmentSize: number): string {
  const perLog = BigInt(segmentsPerLog(segmentSize));
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segno / perLog)}${hex(segno % perLog)}`;
}

/**
 * A WAL position ("0/3000028") as a number.
 * @throws PgBackupError PG_OPTIONS_INVALID for anything else
 */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new PgBackupError('PG_OPTIONS_INVALID', `"${lsn.slice(0, 40)}" is not a WAL position (LSN) like 0/3000028`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** A WAL position in PostgreSQL's notation. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

/** The segment number holding WAL position `lsn`. */
export function segmentOfLsn(lsn: bigint, segmentSize: number): bigint {
  return lsn / BigInt(segmentSize);
}

/** One line of a timeline history file: timeline `parent` forked into the file's own at `switchLsn`. */
export interface TimelineSwitch {
  parent: number;
  switchLsn: bigint;
  reason: string;
}

/** The lines of a `NNNNNNNN.history` file (comments and blank lines skipped). */
export function parseTimelineHistory(text: string): TimelineSwitch[] {
  const out: TimelineSwitch[] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [parent, lsn, ...reason] = trimmed.split(/\s+/);
    if (parent === undefined || lsn === undefined || !/^\d+$/.test(parent)) continue;
    out.push({ parent: Number(parent), switchLsn: parseLsn(lsn), reason: reason.join(' ') });
  }
  return out;
}

/** XLogLongPageHeaderData: xlp_magic(2) xlp_info(2) xlp_tli(4) xlp_pageaddr(8) xlp_rem_len(4) pad(4) xlp_sysid(8) xlp_seg_size(4). */
const XLP_LONG_HEADER = 0x0002;

/**
 * The system identifier and segment size in the long page header that starts every WAL
 * segment; undefined when `bytes` does not start with one (a file that is not a segment).
 */
export function segmentHeader(bytes: Uint8Array): { systemId: string; segmentSize: number; timeline: number } | undefined {
  if (bytes.length < 40) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 40);
  const info = view.getUint16(2, true);
  if ((info & XLP_LONG_HEADER) === 0) return undefined;
  const segmentSize = view.getUint32(32, true);
  // A power of two from 1 MiB to 1 GiB, as initdb allows.
  if (segmentSize < 1 << 20 || segmentSize > 1 << 30 || (segmentSize & (segmentSize - 1)) !== 0) return undefined;
  return { systemId: view.getBigUint64(24, true).toString(), segmentSize, timeline: view.getUint32(4, true) };
}

/** The system identifier at the start of `global/pg_control` (ControlFileData.system_identifier). */
export function controlFileSystemId(bytes: Uint8Array): string | undefined {
  if (bytes.length < 8) return undefined;
  const id = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return id === 0n ? undefined : id.toString();
}
