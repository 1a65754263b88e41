// The drill's grading of the plan's checklist, from made-up findings: an item passes only on
// positive evidence, and every way a drill can go wrong fails the items it should, saying why.

import { describe, expect, it } from 'vitest';
import { type DrillFindings, gradeChecklist, renderDrillReport } from '../../runbooks/lib/drill.ts';

const ARTIFACTS = [
  { kind: 'postgres', id: 'p1', size: 2_000_000, createdAt: '2026-11-22T02:00:00.000Z' },
  { kind: 'redis-rdb', id: 'r1', size: 100_000, createdAt: '2026-11-22T02:00:01.000Z' },
  { kind: 'files', id: 'f1', size: 5_000_000, createdAt: '2026-11-22T02:00:02.000Z' },
];
const COPIES = ['file:///var/backups/jarvis', 's3://b/x?region=us-east-1', 's3://b2/x?region=us-west-2'];
const STEPS = [
  'locate-backup-set',
  'restore-postgres',
  'restore-redis',
  'restore-files',
  'migrate',
  'start-app',
  'verify-database',
  'verify-redis',
  'verify-api',
];

function good(): DrillFindings {
  return {
    backup: { taken: true, artifacts: ARTIFACTS, failures: [], ms: 4000 },
    verify: {
      checks: ARTIFACTS.map((a) => ({
        id: a.id,
        kind: a.kind,
        ok: true,
        copies: COPIES.map((url) => ({ url, ok: true, detail: 'sha256 matches' })),
        decrypt: { ok: true, detail: '3 chunks authenticated', plainBytes: a.size },
      })),
      refusals: ARTIFACTS.map((a) => ({ id: a.id, kind: a.kind, refused: true, code: 'SEAL_UNKNOWN_KEY' })),
    },
    restore: {
      runId: 'csf-1',
      status: 'succeeded',
      error: null,
      steps: STEPS.map((id) => ({ id, status: 'succeeded', durationMs: 100 })),
      restored: { postgres: 'p1', 'redis-rdb': 'r1', files: 'f1' },
      rto: {
        phases: [
          { name: 'provisioning', budgetMs: 900_000, actualMs: 1000, over: false },
          { name: 'restoration', budgetMs: 1_200_000, actualMs: 5000, over: false },
        ],
        total: { budgetMs: 3_600_000, actualMs: 6000, over: false },
      },
      target: { name: 'scratch' },
    },
    validate: {
      services: [
        { name: 'postgres', ok: true, evidence: 'answers' },
        { name: 'app health', ok: true, evidence: '200' },
      ],
      integrity: [{ name: 'postgres', ok: true, evidence: '5 tables match' }],
    },
  };
}

/** The findings' lists are read-only in the API; the tests edit copies of them. */
const mutable = <T>(list: readonly T[]): T[] => list as T[];

const byId = (f: DrillFindings) => new Map(gradeChecklist(f).items.map((i) => [i.id, i]));

describe('gradeChecklist', () => {
  it('passes all ten items of the plan on a clean drill, each with its evidence', () => {
    const { items, recoveryMs } = gradeChecklist(good());
    expect(items).toHaveLength(10);
    expect(items.every((i) => i.passed)).toBe(true);
    expect(recoveryMs).toBe(6000);
    expect(items.find((i) => i.id === 'uploaded-to-s3')?.evidence).toContain('S3 b (us-east-1), S3 b2 (us-west-2)');
  });

  it('a failed restore step fails its item and the items after it that did not run', () => {
    const f = good();
    if ('steps' in f.restore) {
      f.restore.status = 'failed';
      f.restore.steps = STEPS.map((id) =>
        id === 'restore-redis'
          ? { id, status: 'failed', durationMs: 5, message: 'REDIS_RDB_VERSION: too new' }
          : { id, status: ['locate-backup-set', 'restore-postgres'].includes(id) ? 'succeeded' : 'not-run', durationMs: 5 },
      );
    }
    const items = byId(f);
    expect(items.get('redis-restored')?.evidence).toContain('restore-redis failed: REDIS_RDB_VERSION: too new');
    expect(items.get('files-restored')).toMatchObject({ passed: false, evidence: expect.stringContaining('restore-files not-run') });
    expect(items.get('app-started')?.passed).toBe(false);
    expect(items.get('postgres-restored')?.passed).toBe(false); // its verify-database never ran
    expect(items.get('performance')).toMatchObject({ passed: false, evidence: expect.stringContaining('not a full timing') });
  });

  it('a phase over its budget fails "Performance acceptable", naming the phase', () => {
    const f = good();
    if ('rto' in f.restore && f.restore.rto) f.restore.rto.phases[1] = { name: 'restoration', budgetMs: 1000, actualMs: 5000, over: true };
    expect(byId(f).get('performance')).toMatchObject({ passed: false, evidence: expect.stringContaining('restoration 5s/1s OVER') });
  });

  it('a store without an S3 copy, a copy that differs, or a key that opens the backup fail their items', () => {
    const local = good();
    if ('checks' in local.verify)
      for (const c of local.verify.checks) c.copies = [{ url: 'file:///var/backups/jarvis', ok: true, detail: 'ok' }];
    expect(byId(local).get('uploaded-to-s3')).toMatchObject({ passed: false, evidence: expect.stringContaining('no S3 copy') });

    const differs = good();
    const first = 'checks' in differs.verify ? differs.verify.checks[0] : undefined;
    if (first && 'checks' in differs.verify)
      mutable(differs.verify.checks)[0] = {
        ...first,
        copies: [{ url: 's3://b2/x?region=us-west-2', ok: false, detail: 'STORE_INTEGRITY' }],
      };
    expect(byId(differs).get('uploaded-to-s3')?.evidence).toBe('postgres p1 on S3 b2 (us-west-2): STORE_INTEGRITY');

    const plain = good();
    if ('refusals' in plain.verify)
      mutable(plain.verify.refusals)[2] = { id: 'f1', kind: 'files', refused: false, code: 'opened with a random key' };
    expect(byId(plain).get('encryption-verified')).toMatchObject({ passed: false, evidence: 'files f1 opened without the backup key' });
  });

  it('a rebuild that restored another backup than the drilled one proves nothing about it', () => {
    const f = good();
    if ('restored' in f.restore) f.restore.restored = { postgres: 'p0', 'redis-rdb': 'r1', files: 'f1' };
    expect(byId(f).get('postgres-restored')).toMatchObject({
      passed: false,
      evidence: 'the rebuild restored postgres p0, not the drilled p1',
    });
    expect(byId(f).get('redis-restored')?.passed).toBe(true);
  });

  it('steps that failed outright fail every item that needs them, quoting the error', () => {
    const items = byId({
      ...good(),
      backup: { error: 'backup failed: postgres: PG_CONNECT_FAILED' },
      restore: { error: 'no scratch' },
      validate: { error: 'no target' },
    });
    expect(items.get('backup-created')).toMatchObject({ passed: false, evidence: 'backup failed: postgres: PG_CONNECT_FAILED' });
    for (const id of ['postgres-restored', 'redis-restored', 'files-restored', 'app-started', 'performance'])
      expect(items.get(id), id).toMatchObject({ passed: false, evidence: 'no scratch' });
    expect(items.get('data-integrity')).toMatchObject({ passed: false, evidence: 'no target' });
  });
});

describe('renderDrillReport', () => {
  it('says the result first, then the checklist, the RTO table, the issues and the follow-ups', () => {
    const f = good();
    if ('refusals' in f.verify) mutable(f.verify.refusals)[0] = { id: 'p1', kind: 'postgres', refused: false, code: 'x' };
    const checklist = gradeChecklist(f);
    const md = renderDrillReport({
      environment: 'production',
      target: 'scratch',
      runId: 'dr-drill-1',
      startedAt: '2026-11-22T06:00:00.000Z',
      finishedAt: '2026-11-22T06:10:00.000Z',
      checklist,
      copies: COPIES,
      recovery: {
        runId: 'csf-1',
        status: 'succeeded',
        rto: 'rto' in f.restore ? f.restore.rto : null,
        recoveryReport: '# Post-incident report\nbody',
      },
    });
    expect(md.split('\n')[2]).toBe('**Result: FAILED**, 9 of 10 checklist items passed.');
    expect(md).toContain('| ❌ | Backup encryption verified | postgres p1 opened without the backup key |');
    expect(md).toContain('| provisioning | 15m 00s | 1s | yes |');
    expect(md).toContain('## Issues found\n\n- **Backup encryption verified**: postgres p1 opened without the backup key');
    expect(md).toContain('- [ ] Documentation updated');
    expect(md).toContain('## Post-incident report');
  });
});
