// The backup check's metrics, as Prometheus text for node_exporter's textfile collector
// (`--collector.textfile.directory`). The check runs from a scheduler and exits; the metrics
// file is what stays, so an alert can fire on a backup older than its RPO, on one that no
// longer decrypts, and on the check itself no longer running (its timestamp stops moving).
// The formatter is pure; the writer replaces the file atomically because node_exporter reads
// the directory whenever it is scraped and must never see half a file.

import { randomBytes } from 'node:crypto';
import { chmod, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** What the check found for one kind of backup. */
export interface BackupKindMetrics {
  kind: string;
  /** When the newest complete backup was created (ms since the epoch); undefined when there is none. */
  newestAt?: number | undefined;
  /** Its stored size in bytes. */
  sizeBytes?: number | undefined;
  /** The kind's RPO in seconds. */
  rpoSeconds: number;
  /** The newest backup exists and is younger than the RPO. */
  withinRpo: boolean;
  /** It was read back and decrypted: true or false; undefined when not checked (so no sample is written). */
  verified?: boolean | undefined;
}

/** Everything one run of the check reports. */
export interface BackupMetricsInput {
  environment: string;
  /** When the check ran (ms since the epoch). */
  checkedAt: number;
  kinds: readonly BackupKindMetrics[];
}

/** The metric families the check writes, in file order, with their HELP text. */
export const BACKUP_METRICS = {
  drkit_backup_newest_timestamp_seconds: 'Creation time of the newest complete backup of the kind (Unix seconds).',
  drkit_backup_newest_age_seconds: 'Age of the newest complete backup of the kind when the check ran.',
  drkit_backup_newest_size_bytes: 'Stored size of the newest complete backup of the kind.',
  drkit_backup_rpo_seconds: 'The recovery point objective the kind is held to.',
  drkit_backup_within_rpo: '1 when the newest complete backup of the kind is younger than its RPO, else 0 (also 0 when there is none).',
  drkit_backup_verified: '1 when the newest backup of the kind (and any parent it needs) was read back and decrypted, 0 when that failed.',
  drkit_backup_check_timestamp_seconds: 'When the backup check last ran (Unix seconds); alert when it stops moving.',
} as const;

type MetricName = keyof typeof BACKUP_METRICS;

/** A label value escaped as the exposition format wants: backslash, double quote, newline. */
function labelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function sampleValue(value: number): string {
  if (Number.isFinite(value)) return String(value);
  return Number.isNaN(value) ? 'NaN' : value > 0 ? '+Inf' : '-Inf';
}

/**
 * The Prometheus text exposition of a check: one gauge family per metric, each with its HELP
 * and TYPE lines and all its samples together (the format requires it), labelled with
 * `environment` and `kind`. A kind without a backup gets `within_rpo 0` and its RPO, but no
 * timestamp, age or size (there is nothing to date). `verified` is written only for kinds
 * that were checked. The check's own timestamp is labelled with the environment only.
 */
export function formatBackupMetrics(input: BackupMetricsInput): string {
  const samples = new Map<MetricName, string[]>();
  const add = (name: MetricName, labels: Record<string, string>, value: number) => {
    const text = Object.entries(labels)
      .map(([key, v]) => `${key}="${labelValue(v)}"`)
      .join(',');
    const list = samples.get(name) ?? [];
    list.push(`${name}{${text}} ${sampleValue(value)}`);
    samples.set(name, list);
  };
  for (const k of input.kinds) {
    const labels = { environment: input.environment, kind: k.kind };
    if (k.newestAt !== undefined) {
      add('drkit_backup_newest_timestamp_seconds', labels, k.newestAt / 1000);
      add('drkit_backup_newest_age_seconds', labels, Math.max(0, (input.checkedAt - k.newestAt) / 1000));
    }
    if (k.sizeBytes !== undefined) add('drkit_backup_newest_size_bytes', labels, k.sizeBytes);
    add('drkit_backup_rpo_seconds', labels, k.rpoSeconds);
    add('drkit_backup_within_rpo', labels, k.withinRpo ? 1 : 0);
    if (k.verified !== undefined) add('drkit_backup_verified', labels, k.verified ? 1 : 0);
  }
  add('drkit_backup_check_timestamp_seconds', { environment: input.environment }, input.checkedAt / 1000);
  const lines: string[] = [];
  for (const name of Object.keys(BACKUP_METRICS) as MetricName[]) {
    const list = samples.get(name);
    if (!list) continue;
    lines.push(`# HELP ${name} ${BACKUP_METRICS[name]}`, `# TYPE ${name} gauge`, ...list);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Replaces `path` with `text` atomically: a temp file in the same directory (named so the
 * textfile collector, which reads only `*.prom`, ignores it), fsynced, made world-readable
 * (node_exporter runs as its own user, whatever the umask), then renamed over the target.
 * The directory must exist: it is node_exporter's, not ours to create.
 */
export async function writeTextfileAtomic(path: string, text: string): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o644);
  try {
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await chmod(temp, 0o644);
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}
