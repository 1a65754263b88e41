// The WAL archive as a whole: what it holds, whether it is continuous from each base backup,
// which window of time it can recover to, and which segments retention may drop.
import { type OpenKeys, open } from '@drkit/crypto-stream';
import type { Catalog, Manifest, Store } from '@drkit/s3-store';
import { type BaseBackupRecord, POSTGRES_BASE_KIND } from './base-backup.js';
import { WAL_PREFIX } from './wal.js';
import {
  DEFAULT_WAL_SEGMENT_SIZE,
  formatLsn,
  parseLsn,
  parseTimelineHistory,
  parseWalName,
  segmentName,
  segmentNumber,
  segmentOfLsn,
  type WalFileKind,
} from './wal-names.js';

/** One file in the archive. */
export interface WalArchiveEntry {
  name: string;
  key: string;
  kind: WalFileKind;
  timeline: number;
  /** Segment number (position / segment size) of segments, .partial and .backup files. */
  segno?: bigint;
  /** Stored (sealed) size. */
  size: number;
  /** When the store received it. */
  archivedAt: Date;
}

/** A base backup in the catalog with its record. */
export interface BaseBackupEntry {
  manifest: Manifest;
  base: BaseBackupRecord;
}

/** The base backups of the catalog (all clusters, or one), oldest first; failed ones left out. */
export async function listBaseBackups(catalog: Catalog, systemId?: string): Promise<BaseBackupEntry[]> {
  const out: BaseBackupEntry[] = [];
  for (const manifest of await catalog.list({ kind: POSTGRES_BASE_KIND })) {
    if (manifest.verification?.status === 'failed') continue;
    const base = manifest.fingerprint as unknown as BaseBackupRecord | undefined;
    if (!base?.systemId || !base.startLsn) continue;
    if (systemId !== undefined && base.systemId !== systemId) continue;
    out.push({ manifest, base });
  }
  return out;
}

/** The clusters (system identifiers) that have WAL in `store`. */
export async function walSystems(store: Store): Promise<string[]> {
  const ids = new Set<string>();
  for await (const info of store.list(WAL_PREFIX)) {
    const id = info.key.slice(WAL_PREFIX.length).split('/')[0];
    if (id && /^\d+$/.test(id)) ids.add(id);
  }
  return [...ids].sort();
}

/** Every archived file of cluster `systemId`, in name order. */
export async function listWal(store: Store, systemId: string, segmentSize = DEFAULT_WAL_SEGMENT_SIZE): Promise<WalArchiveEntry[]> {
  const prefix = `${WAL_PREFIX}${systemId}/`;
  const out: WalArchiveEntry[] = [];
  for await (const info of store.list(prefix)) {
    const name = parseWalName(info.key.slice(prefix.length));
    if (!name) continue;
    out.push({
      name: name.name,
      key: info.key,
      kind: name.kind,
      timeline: name.timeline,
      ...(name.log === undefined ? {} : { segno: segmentNumber(name, segmentSize) }),
      size: info.size,
      archivedAt: info.modifiedAt,
    });
  }
  return out;
}

/** How far one base backup can be rolled forward with the archive. */
export interface BaseCoverage {
  id: string;
  timeline: number;
  startWal: string;
  /** The earliest moment a recovery from it can stop at: when the backup had finished. */
  from: Date;
  /** The latest: when the last segment of its unbroken run of WAL was archived. */
  to: Date;
  /** The last segment of that run. */
  lastWal: string;
  /** The timelines it follows, from its own to the newest. */
  timelines: number[];
  /** The first segment missing in the run, if the archive has later ones (a gap). */
  gap?: string;
}

/** What {@link verifyWalArchive} found. */
export interface WalArchiveReport {
  systemId: string;
  segmentSize: number;
  segments: number;
  storedBytes: number;
  newest?: { name: string; archivedAt: Date };
  /** Each timeline's parent and switch point, from the archived history files. */
  timelines: { timeline: number; parent?: number; switchLsn?: string }[];
  bases: BaseCoverage[];
  /** The moments a recovery can reach, merged over every base backup. */
  windows: { from: Date; to: Date }[];
  /** Segments missing between a base backup and later archived WAL. */
  gaps: string[];
  /** Problems, in words: gaps, no base backup, unreadable history. Empty when all is well. */
  problems: string[];
  ok: boolean;
}

/** Options of {@link verifyWalArchive}. */
export interface VerifyWalArchiveOptions {
  catalog: Catalog;
  /** Reads the timeline history files. */
  keys: OpenKeys;
  /** @default every cluster with base backups or WAL in the store */
  systemId?: string;
  /**
   * How long after the newest base backup finished the archive may still hold nothing newer
   * before that counts as a problem (archiving is off or failing). @default 10 minutes
   */
  archiveGraceMs?: number;
  /** The clock, for tests. @default () => new Date() */
  now?: () => Date;
  signal?: AbortSignal;
}

/**
 * Checks the WAL archive against the base backups: for each base backup, the segments from
 * its start on must follow one another without a gap along its timeline and the timelines
 * that branched from it (read from the archived history files); reports the recovery
 * window that is actually achievable.
 * @throws StoreError, SealError when the archive cannot be read
 */
export async function verifyWalArchive(options: VerifyWalArchiveOptions): Promise<WalArchiveReport[]> {
  const store = options.catalog.store;
  const bases = await listBaseBackups(options.catalog, options.systemId);
  const systems =
    options.systemId !== undefined
      ? [options.systemId]
      : [...new Set([...bases.map((b) => b.base.systemId), ...(await walSystems(store))])].sort();
  const reports: WalArchiveReport[] = [];
  for (const systemId of systems) {
    const own = bases.filter((b) => b.base.systemId === systemId);
    const segmentSize = own[0]?.base.walSegmentSize ?? DEFAULT_WAL_SEGMENT_SIZE;
    const entries = await listWal(store, systemId, segmentSize);
    const problems: string[] = [];
    const parents = new Map<number, { parent: number; switchLsn: bigint }>();
    for (const entry of entries.filter((e) => e.kind === 'history')) {
      try {
        const chunks: Buffer[] = [];
        for await (const chunk of open(await store.get(entry.key, options.signal ? { signal: options.signal } : {}), {
          keys: options.keys,
        }))
          chunks.push(chunk);
        const lines = parseTimelineHistory(Buffer.concat(chunks).toString('utf8'));
        const last = lines.at(-1);
        if (last) parents.set(entry.timeline, { parent: last.parent, switchLsn: last.switchLsn });
      } catch (error) {
        problems.push(`timeline history ${entry.name} cannot be read (${(error as Error).message})`);
      }
    }
    const segments = entries.filter((e) => e.kind === 'segment');
    const coverage = own.map((b) => coverageOf(b, segments, parents, segmentSize));
    const gaps = [...new Set(coverage.flatMap((c) => (c.gap ? [c.gap] : [])))];
    for (const c of coverage)
      if (c.gap)
        problems.push(
          `WAL segment ${c.gap} is missing: base backup ${c.id} can recover only up to ${c.to.toISOString()} (segment ${c.lastWal})`,
        );
    // The most likely failure of all: archive_command not set, or failing on every segment.
    const newestBase = coverage.at(-1);
    const lastBase = own.at(-1);
    const graceMs = options.archiveGraceMs ?? 10 * 60_000;
    const now = (options.now ?? (() => new Date()))();
    if (
      newestBase &&
      lastBase &&
      !newestBase.gap &&
      newestBase.lastWal <= lastBase.base.stopWal &&
      now.getTime() - newestBase.from.getTime() > graceMs
    )
      problems.push(
        `no WAL has been archived since base backup ${newestBase.id} finished at ${newestBase.from.toISOString()}: is archive_command set to 'drkit wal-push %p' on the server, and does it succeed (pg_stat_archiver.last_failed_wal)? Or has the database had no writes since?`,
      );
    if (own.length === 0 && entries.length > 0)
      problems.push(
        `there is WAL of cluster ${systemId} but no base backup of it to replay it onto: take one (drkit backup postgres-base)`,
      );
    const newest = segments.reduce<WalArchiveEntry | undefined>(
      (a, e) => (a === undefined || e.archivedAt > a.archivedAt ? e : a),
      undefined,
    );
    reports.push({
      systemId,
      segmentSize,
      segments: segments.length,
      storedBytes: entries.reduce((n, e) => n + e.size, 0),
      ...(newest ? { newest: { name: newest.name, archivedAt: newest.archivedAt } } : {}),
      timelines: [...new Set([1, ...entries.map((e) => e.timeline)])]
        .sort((a, b) => a - b)
        .map((timeline) => {
          const p = parents.get(timeline);
          return p ? { timeline, parent: p.parent, switchLsn: formatLsn(p.switchLsn) } : { timeline };
        }),
      bases: coverage,
      windows: mergeWindows(coverage),
      gaps,
      problems,
      ok: problems.length === 0,
    });
  }
  return reports;
}

/** The timelines from `timeline` to the newest one that descends from it, each with the segment it starts at. */
function lineage(
  timeline: number,
  parents: Map<number, { parent: number; switchLsn: bigint }>,
  segmentSize: number,
): { timeline: number; from?: bigint }[] {
  const descends = (t: number): boolean => {
    for (let at = t, hops = 0; hops < 1000; hops++) {
      if (at === timeline) return true;
      const p = parents.get(at);
      if (!p) return false;
      at = p.parent;
    }
    return false;
  };
  const newest = [timeline, ...parents.keys()].filter(descends).sort((a, b) => b - a)[0] ?? timeline;
  const chain: { timeline: number; from?: bigint }[] = [];
  for (let at = newest; ; ) {
    const p = parents.get(at);
    if (at === timeline || !p) {
      chain.unshift({ timeline: at });
      break;
    }
    chain.unshift({ timeline: at, from: segmentOfLsn(p.switchLsn, segmentSize) });
    at = p.parent;
  }
  return chain;
}

/** How far `base` rolls forward: its unbroken run of segments along its lineage. */
function coverageOf(
  { manifest, base }: BaseBackupEntry,
  segments: WalArchiveEntry[],
  parents: Map<number, { parent: number; switchLsn: bigint }>,
  segmentSize: number,
): BaseCoverage {
  const chain = lineage(base.timeline, parents, segmentSize);
  const byTimeline = new Map<number, Map<bigint, WalArchiveEntry>>();
  for (const s of segments) {
    const map = byTimeline.get(s.timeline) ?? new Map<bigint, WalArchiveEntry>();
    byTimeline.set(s.timeline, map);
    map.set(s.segno as bigint, s);
  }
  const stopSegno = segmentOfLsn(parseLsn(base.stopLsn), segmentSize);
  let segno = segmentOfLsn(parseLsn(base.startLsn), segmentSize);
  let to = new Date(base.stoppedAt);
  let lastWal = base.stopWal;
  let gap: string | undefined;
  walk: for (let i = 0; i < chain.length; i++) {
    const here = chain[i] as { timeline: number };
    const next = chain[i + 1];
    const map = byTimeline.get(here.timeline) ?? new Map<bigint, WalArchiveEntry>();
    const end = next?.from !== undefined ? next.from - 1n : [...map.keys()].reduce((a, b) => (b > a ? b : a), -1n);
    for (; segno <= end; segno++) {
      const entry = map.get(segno);
      if (!entry) {
        // The backup's own WAL travels in its tar: a missing segment before its stop is no gap.
        if (segno <= stopSegno) continue;
        gap = segmentName(here.timeline, segno, segmentSize);
        break walk;
      }
      if (entry.archivedAt > to) to = entry.archivedAt;
      lastWal = entry.name;
    }
  }
  return {
    id: manifest.id,
    timeline: base.timeline,
    startWal: base.startWal,
    from: new Date(base.stoppedAt),
    to,
    lastWal,
    timelines: chain.map((c) => c.timeline),
    ...(gap ? { gap } : {}),
  };
}

function mergeWindows(coverage: BaseCoverage[]): { from: Date; to: Date }[] {
  const sorted = coverage.map((c) => ({ from: c.from, to: c.to })).sort((a, b) => a.from.getTime() - b.from.getTime());
  const out: { from: Date; to: Date }[] = [];
  for (const w of sorted) {
    const last = out.at(-1);
    if (last && w.from <= last.to) {
      if (w.to > last.to) last.to = w.to;
    } else out.push({ ...w });
  }
  return out;
}

/** What {@link pruneWal} dropped and kept. */
export interface WalPruneResult {
  systemId: string;
  /** Segments before this one are not needed by any kept base backup. */
  keepFrom?: string;
  deleted: string[];
  kept: number;
  /** Why nothing was pruned, when that is the case. */
  reason?: string;
}

/**
 * Drops WAL that no kept base backup needs: every segment (and .partial, .backup file) before
 * the start of the oldest base backup of its cluster. Timeline history files are kept (they
 * are tiny, and recovery reads them to choose a timeline). A cluster without any base backup
 * keeps all of its WAL: nothing can be replayed from it, but dropping it is not this call's
 * decision. Run it after the base backups' own retention.
 * @throws StoreError when the store cannot be listed or a delete fails
 */
export async function pruneWal(options: { catalog: Catalog; systemId?: string; dryRun?: boolean }): Promise<WalPruneResult[]> {
  const store = options.catalog.store;
  const bases = await listBaseBackups(options.catalog, options.systemId);
  const systems = options.systemId !== undefined ? [options.systemId] : await walSystems(store);
  const results: WalPruneResult[] = [];
  for (const systemId of systems) {
    const own = bases.filter((b) => b.base.systemId === systemId);
    const segmentSize = own[0]?.base.walSegmentSize ?? DEFAULT_WAL_SEGMENT_SIZE;
    const entries = await listWal(store, systemId, segmentSize);
    if (own.length === 0) {
      results.push({ systemId, deleted: [], kept: entries.length, reason: 'no base backup of this cluster: its WAL is kept' });
      continue;
    }
    const oldest = own.reduce((a, b) => (parseLsn(b.base.startLsn) < parseLsn(a.base.startLsn) ? b : a));
    const keepFrom = segmentOfLsn(parseLsn(oldest.base.startLsn), segmentSize);
    const drop = entries.filter((e) => e.kind !== 'history' && e.segno !== undefined && e.segno < keepFrom);
    if (!options.dryRun) for (const e of drop) await store.delete(e.key);
    results.push({
      systemId,
      keepFrom: oldest.base.startWal,
      deleted: drop.map((e) => e.name),
      kept: entries.length - drop.length,
    });
  }
  return results;
}
