// The backup check's Prometheus textfile: the pure formatter (exact output, escaping, what a
// missing or unchecked kind writes) and the atomic writer node_exporter reads from.

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BACKUP_METRICS, formatBackupMetrics, writeTextfileAtomic } from '../../runbooks/lib/metrics.ts';

const dir = mkdtempSync(join(tmpdir(), 'drkit-metrics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CHECKED = Date.parse('2026-11-22T05:00:00.000Z');

describe('formatBackupMetrics', () => {
  it('writes every family with HELP and TYPE, samples together, a missing kind without a timestamp', () => {
    const text = formatBackupMetrics({
      environment: 'production',
      checkedAt: CHECKED,
      kinds: [
        {
          kind: 'postgres',
          newestAt: Date.parse('2026-11-22T02:00:00.500Z'),
          sizeBytes: 12_345,
          rpoSeconds: 86_400,
          withinRpo: true,
          verified: true,
        },
        { kind: 'files', rpoSeconds: 3600, withinRpo: false, verified: false },
      ],
    });
    expect(text).toBe(
      [
        `# HELP drkit_backup_newest_timestamp_seconds ${BACKUP_METRICS.drkit_backup_newest_timestamp_seconds}`,
        '# TYPE drkit_backup_newest_timestamp_seconds gauge',
        'drkit_backup_newest_timestamp_seconds{environment="production",kind="postgres"} 1795312800.5',
        `# HELP drkit_backup_newest_age_seconds ${BACKUP_METRICS.drkit_backup_newest_age_seconds}`,
        '# TYPE drkit_backup_newest_age_seconds gauge',
        'drkit_backup_newest_age_seconds{environment="production",kind="postgres"} 10799.5',
        `# HELP drkit_backup_newest_size_bytes ${BACKUP_METRICS.drkit_backup_newest_size_bytes}`,
        '# TYPE drkit_backup_newest_size_bytes gauge',
        'drkit_backup_newest_size_bytes{environment="production",kind="postgres"} 12345',
        `# HELP drkit_backup_rpo_seconds ${BACKUP_METRICS.drkit_backup_rpo_seconds}`,
        '# TYPE drkit_backup_rpo_seconds gauge',
        'drkit_backup_rpo_seconds{environment="production",kind="postgres"} 86400',
        'drkit_backup_rpo_seconds{environment="production",kind="files"} 3600',
        `# HELP drkit_backup_within_rpo ${BACKUP_METRICS.drkit_backup_within_rpo}`,
        '# TYPE drkit_backup_within_rpo gauge',
        'drkit_backup_within_rpo{environment="production",kind="postgres"} 1',
        'drkit_backup_within_rpo{environment="production",kind="files"} 0',
        `# HELP drkit_backup_verified ${BACKUP_METRICS.drkit_backup_verified}`,
        '# TYPE drkit_backup_verified gauge',
        'drkit_backup_verified{environment="production",kind="postgres"} 1',
        'drkit_backup_verified{environment="production",kind="files"} 0',
        `# HELP drkit_backup_check_timestamp_seconds ${BACKUP_METRICS.drkit_backup_check_timestamp_seconds}`,
        '# TYPE drkit_backup_check_timestamp_seconds gauge',
        'drkit_backup_check_timestamp_seconds{environment="production"} 1795323600',
        '',
      ].join('\n'),
    );
  });

  it('leaves drkit_backup_verified out when decryption was not checked', () => {
    const text = formatBackupMetrics({
      environment: 'staging',
      checkedAt: CHECKED,
      kinds: [{ kind: 'redis-rdb', newestAt: CHECKED - 60_000, sizeBytes: 10, rpoSeconds: 86_400, withinRpo: true }],
    });
    expect(text).not.toContain('drkit_backup_verified');
    expect(text).toContain('drkit_backup_newest_age_seconds{environment="staging",kind="redis-rdb"} 60\n');
  });

  it('escapes label values and never writes a negative age (a clock ahead of the check)', () => {
    const text = formatBackupMetrics({
      environment: 'a "quoted"\\env\nname',
      checkedAt: CHECKED,
      kinds: [{ kind: 'postgres', newestAt: CHECKED + 5000, rpoSeconds: 60, withinRpo: true }],
    });
    expect(text).toContain('environment="a \\"quoted\\"\\\\env\\nname"');
    expect(text).toContain('drkit_backup_newest_age_seconds{environment="a \\"quoted\\"\\\\env\\nname",kind="postgres"} 0\n');
    // One line per sample: the newline in the label did not break a line.
    for (const line of text.trimEnd().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) drkit_|drkit_\w+\{.*\} -?[\d.]+$)/);
  });

  it('writes only the check timestamp when there are no kinds', () => {
    const text = formatBackupMetrics({ environment: 'x', checkedAt: CHECKED, kinds: [] });
    expect(text.trimEnd().split('\n')).toEqual([
      `# HELP drkit_backup_check_timestamp_seconds ${BACKUP_METRICS.drkit_backup_check_timestamp_seconds}`,
      '# TYPE drkit_backup_check_timestamp_seconds gauge',
      'drkit_backup_check_timestamp_seconds{environment="x"} 1795323600',
    ]);
  });
});

describe('writeTextfileAtomic', () => {
  it('replaces the file, readable by others, and leaves no temp file behind', async () => {
    const path = join(dir, 'drkit.prom');
    writeFileSync(path, 'old content\n', { mode: 0o600 });
    await writeTextfileAtomic(path, 'new content\n');
    expect(readFileSync(path, 'utf8')).toBe('new content\n');
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir)).toEqual(['drkit.prom']);
  });

  it('fails in a directory that does not exist, and creates nothing', async () => {
    const missing = join(dir, 'no-such-dir', 'drkit.prom');
    await expect(writeTextfileAtomic(missing, 'x\n')).rejects.toThrow(/ENOENT/);
    expect(readdirSync(dir)).toEqual(['drkit.prom']);
  });

  it('leaves the old file and no temp file when the rename fails', async () => {
    const target = join(dir, 'a-directory.prom');
    // A directory in the way: the rename fails after the temp file was written.
    mkdirSync(join(target, 'inside'), { recursive: true });
    await expect(writeTextfileAtomic(target, 'x\n')).rejects.toThrow();
    expect(readdirSync(dir).sort()).toEqual(['a-directory.prom', 'drkit.prom']);
    expect(readFileSync(join(dir, 'drkit.prom'), 'utf8')).toBe('new content\n');
  });
});
