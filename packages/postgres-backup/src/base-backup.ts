import { type OpenKeys, seal, sealingKeyId } from '@drkit/crypto-stream';
import type { Catalog, Manifest, Tier } from '@drkit/s3-store';
import { DRKIT_VERSION } from './backup.js';
import { connectionError, libpqEnv, type PgTarget, pgTarget } from './connection.js';
import { PgBackupError, signalOf, throwIfAborted } from './errors.js';
import { emitter, type PgBackupEventListener, throttledProgress } from './events.js';
import { errorLines, findTool, startTool } from './tools.js';
import { controlFileSystemId, DEFAULT_WAL_SEGMENT_SIZE, formatLsn, parseLsn, segmentName, segmentOfLsn } from './wal-names.js';

/** The artifact kind of a base backup (pg_basebackup, tar format, WAL included). */
export const POSTGRES_BASE_KIND = 'postgres-base';

/** What a base backup's manifest records about it (its `fingerprint`). */
export interface BaseBackupRecord {
  /** The cluster's system identifier: its WAL is archived under `wal/<systemId>/`. */
  systemId: string;
  timeline: number;
  /** WAL positions where the backup started and where it became consistent. */
  startLsn: string;
  stopLsn: string;
  /** The WAL segments holding them: recovery needs the archive from `startWal` on. */
  startWal: string;
  stopWal: string;
  walSegmentSize: number;
  /** When pg_basebackup started and when it had finished (this host's clock). */
  startedAt: string;
  stoppedAt: string;
  /** The server's major version (a base backup only starts on the same major). */
  serverMajor: number;
  tool: { name: 'pg_basebackup'; version: string };
  /** The tar holds the WAL from start to stop (`-X fetch`): restorable without the archive. */
  includesWal: true;
  /** The tar holds pg_basebackup's backup_manifest (file checksums, checked after extraction). */
  hasBackupManifest: boolean;
}

/** Options of {@link backupBase}. */
export interface BaseBackupOptions {
  /** Any database of the cluster; its user needs the REPLICATION attribute and a `replication` line in pg_hba.conf. */
  url: string | PgTarget;
  catalog: Catalog;
  keys: OpenKeys;
  /** @default "manual" */
  tier?: Tier;
  /** zstd level of the sealed stream. @default 3 */
  level?: number;
  environment?: string;
  labels?: Record<string, string>;
  binDir?: string;
  /** Throttle pg_basebackup (`--max-rate`, e.g. "50M") so a production server keeps its I/O. */
  maxRate?: string;
  signal?: AbortSignal;
  onEvent?: PgBackupEventListener;
}

/** The outcome of {@link backupBase}. */
export interface BaseBackup {
  manifest: Manifest;
  base: BaseBackupRecord;
}

/**
 * Takes a physical base backup: `pg_basebackup --format=tar --wal-method=fetch` to stdout,
 * sealed chunk by chunk into the catalog, no plaintext on disk. The tar carries the WAL from
 * the backup's start to its stop, so it restores on its own; with the archive (`drkit
 * wal-push`) it is the starting point of a recovery to any later moment. The manifest, written
 * last, records start and stop LSN, timeline, segment size and the system identifier, read
 * from the backup's own pg_control and backup_label as they stream by.
 * @throws PgBackupError PG_BASE_BACKUP_FAILED, PG_UNREACHABLE, PG_AUTH_FAILED, PG_TOOL_MISSING,
 *   PG_ABORTED; StoreError from the store
 */
export async function backupBase(options: BaseBackupOptions): Promise<BaseBackup> {
  const target = typeof options.url === 'string' ? pgTarget(options.url) : options.url;
  const emit = emitter(options.onEvent);
  throwIfAborted(options.signal, 'the base backup');
  const tool = await findTool('pg_basebackup', { binDir: options.binDir });
  const startedAt = new Date();
  emit({
    type: 'step',
    step: 'base-backup',
    message: `pg_basebackup ${tool.version} of ${target.description} (fast checkpoint, WAL included)`,
  });
  const args = [
    '--pgdata=-',
    '--format=tar',
    '--wal-method=fetch',
    '--checkpoint=fast',
    '--verbose',
    '--no-password',
    `--label=drkit base backup ${startedAt.toISOString()}`,
    ...(options.maxRate ? [`--max-rate=${options.maxRate}`] : []),
  ];
  const proc = startTool(tool.path, args, { env: libpqEnv(target), ...signalOf(options) });
  const scan = tarScanner(['global/pg_control', 'backup_label', 'PG_VERSION']);
  const progress = throttledProgress(emit, 'dump');
  let plainSize = 0;

  async function* tarBytes(): AsyncGenerator<Buffer> {
    let completed = false;
    try {
      for await (const chunk of proc.child.stdout as AsyncIterable<Buffer>) {
        scan.push(chunk);
        progress.bytes(chunk.length);
        plainSize += chunk.length;
        yield chunk;
      }
      const exit = await proc.exited;
      if (exit.code !== 0) {
        if (options.signal?.aborted)
          throw new PgBackupError('PG_ABORTED', `the base backup of ${target.description} was aborted; no backup was recorded`);
        const text = proc.stderrLines.join('\n');
        if (/could not connect|connection to server .* failed|password authentication failed/i.test(text))
          throw connectionError(target, new Error(errorLines(proc.stderrLines)[0] ?? 'pg_basebackup could not connect'), text);
        throw new PgBackupError(
          'PG_BASE_BACKUP_FAILED',
          `pg_basebackup of ${target.description} failed (${exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`}): ${errorLines(proc.stderrLines).join(' | ') || 'no error message'}. ` +
            'It needs a user with the REPLICATION attribute, a "host replication" line in pg_hba.conf and a free max_wal_senders slot; no backup was recorded',
          { details: { stderr: errorLines(proc.stderrLines) } },
        );
      }
      completed = true;
    } finally {
      if (!completed) proc.child.kill('SIGTERM');
    }
  }

  let base: BaseBackupRecord | undefined;
  try {
    const manifest = await options.catalog.put({
      kind: POSTGRES_BASE_KIND,
      tier: options.tier ?? 'manual',
      createdAt: startedAt,
      source: { description: target.description, host: target.host, ...(options.environment ? { environment: options.environment } : {}) },
      tool: { name: 'drkit', version: DRKIT_VERSION },
      compression: 'zstd',
      encryption: { format: 'drkit-sealed/1', algorithm: 'aes-256-gcm', keyId: sealingKeyId(options.keys) },
      body: seal(tarBytes(), { key: options.keys, compression: 'zstd', level: options.level ?? 3, ...signalOf(options) }),
      ...signalOf(options),
      beforeManifest: async () => {
        base = baseRecord(proc.stderrLines, scan, tool.version, startedAt, new Date());
        return {
          plainSize,
          server: { name: 'PostgreSQL', version: String(base.serverMajor) },
          fingerprint: base as unknown as Record<string, unknown>,
          labels: { systemId: base.systemId, timeline: String(base.timeline), startWal: base.startWal, ...options.labels },
        };
      },
    });
    progress.done();
    const record = base as BaseBackupRecord;
    emit({
      type: 'step',
      step: 'stored',
      message: `stored base backup ${manifest.id}: ${record.startLsn} to ${record.stopLsn} on timeline ${record.timeline}, ${plainSize} bytes, ${manifest.object.size} stored`,
    });
    return { manifest, base: record };
  } catch (error) {
    if (options.signal?.aborted && !(error instanceof PgBackupError && error.code === 'PG_ABORTED'))
      throw new PgBackupError('PG_ABORTED', `the base backup of ${target.description} was aborted; no backup was recorded`, {
        cause: error,
      });
    for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof PgBackupError) throw e;
    throw error;
  } finally {
    if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGTERM');
  }
}

/** The record of a finished pg_basebackup, from its verbose output and the files it streamed. */
function baseRecord(lines: readonly string[], scan: TarScan, version: string, startedAt: Date, stoppedAt: Date): BaseBackupRecord {
  const text = lines.join('\n');
  const start = /write-ahead log start point: ([0-9A-F]+\/[0-9A-F]+) on timeline (\d+)/i.exec(text);
  const stop = /write-ahead log end point: ([0-9A-F]+\/[0-9A-F]+)/i.exec(text);
  const control = scan.files.get('global/pg_control');
  const systemId = control && controlFileSystemId(control);
  const label = scan.files.get('backup_label')?.toString('utf8') ?? '';
  if (!start || !stop || !systemId)
    throw new PgBackupError(
      'PG_BASE_BACKUP_FAILED',
      `pg_basebackup finished but did not report its WAL start and end points or stream global/pg_control (${errorLines(lines).join(' | ') || 'no message'}); no backup was recorded`,
    );
  const segmentSize = scan.walSegmentSize ?? DEFAULT_WAL_SEGMENT_SIZE;
  const timeline = Number(start[2]);
  const startLsn = parseLsn(start[1] as string);
  const stopLsn = parseLsn(stop[1] as string);
  // The label's START TIME is the server's: prefer it, it is when the backup's checkpoint ran.
  const labelTime = /START TIME: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\S+)/.exec(label);
  const serverStart = labelTime && labelTime[2] === 'UTC' ? new Date(`${labelTime[1]?.replace(' ', 'T')}Z`) : startedAt;
  return {
    systemId,
    timeline,
    startLsn: formatLsn(startLsn),
    stopLsn: formatLsn(stopLsn),
    startWal: segmentName(timeline, segmentOfLsn(startLsn, segmentSize), segmentSize),
    stopWal: segmentName(timeline, segmentOfLsn(stopLsn, segmentSize), segmentSize),
    walSegmentSize: segmentSize,
    startedAt: serverStart.toISOString(),
    stoppedAt: stoppedAt.toISOString(),
    serverMajor: Number(scan.files.get('PG_VERSION')?.toString('utf8').trim() ?? 0),
    tool: { name: 'pg_basebackup', version },
    includesWal: true,
    hasBackupManifest: scan.names.has('backup_manifest'),
  };
}

/** What a {@link tarScanner} saw go by. */
interface TarScan {
  push(chunk: Buffer): void;
  /** The contents of the wanted files (small ones only). */
  readonly files: Map<string, Buffer>;
  /** Every member name. */
  readonly names: Set<string>;
  /** The size of the first WAL segment in pg_wal/. */
  readonly walSegmentSize: number | undefined;
}

/**
 * Follows a tar stream's headers as it passes, keeping the contents of a few small files. No
 * copy of the stream is kept: 512-byte headers are parsed, member data is skipped.
 */
function tarScanner(wanted: readonly string[]): TarScan {
  const files = new Map<string, Buffer>();
  const names = new Set<string>();
  let walSegmentSize: number | undefined;
  let header = Buffer.alloc(0);
  let skip = 0;
  let capture: { name: string; parts: Buffer[]; left: number } | undefined;
  const octal = (field: Buffer) => Number.parseInt(field.toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
  return {
    files,
    names,
    get walSegmentSize() {
      return walSegmentSize;
    },
    push(chunk: Buffer) {
      let at = 0;
      while (at < chunk.length) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - at);
          if (capture && capture.left > 0) {
            const take = Math.min(capture.left, n);
            capture.parts.push(Buffer.from(chunk.subarray(at, at + take)));
            capture.left -= take;
            if (capture.left === 0) files.set(capture.name, Buffer.concat(capture.parts));
          }
          skip -= n;
          at += n;
          continue;
        }
        const need = 512 - header.length;
        header = Buffer.concat([header, chunk.subarray(at, at + need)]);
        at += Math.min(need, chunk.length - at);
        if (header.length < 512) continue;
        const block = header;
        header = Buffer.alloc(0);
        if (block.every((b) => b === 0)) continue;
        const name = block.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
        const prefix = block.subarray(345, 500).toString('utf8').replace(/\0.*$/s, '');
        const full = prefix ? `${prefix}/${name}` : name;
        const size = octal(block.subarray(124, 136));
        names.add(full);
        if (walSegmentSize === undefined && /^pg_wal\/[0-9A-F]{24}$/.test(full)) walSegmentSize = size;
        capture = wanted.includes(full) && size <= 64 * 1024 ? { name: full, parts: [], left: size } : undefined;
        if (capture && size === 0) files.set(full, Buffer.alloc(0));
        skip = Math.ceil(size / 512) * 512;
      }
    },
  };
}
