// The DR drill's grading and its test report. The first plan's test checklist is graded from
// what the drill's steps found, each item with the evidence that makes it pass or fail; the
// report is the plan's drill deliverable: the checklist, the RTO table (each phase of the
// rebuild against its budget), the issues found, and the rebuild's own report as an appendix.
// Pure functions, so the grading is tested without running a drill.

import { formatElapsed, type RunReport } from '@drkit/runbook';

/** One item of the plan's test checklist. */
export interface ChecklistItem {
  id: string;
  /** The plan's wording. */
  title: string;
  passed: boolean;
  /** What was seen: ids, counts, sizes, timings, or the error. */
  evidence: string;
}

/** The graded checklist. */
export interface Checklist {
  items: ChecklistItem[];
  /** How long the rebuild took, when it ran. */
  recoveryMs?: number;
}

/** Each phase of the rebuild against its budget, and the whole against the RTO. */
export interface RtoTable {
  phases: { name: string; budgetMs: number; actualMs: number; over: boolean }[];
  total: { budgetMs: number; actualMs: number; over: boolean };
}

/** The RTO table of a run's report. */
export function rtoTable(report: RunReport): RtoTable {
  return {
    phases: report.phases.map((p) => ({ name: p.name, budgetMs: p.budgetMs, actualMs: p.actualMs, over: p.over })),
    total: { budgetMs: report.rto.budgetMs, actualMs: report.rto.actualMs, over: report.rto.over },
  };
}

type Failed = { error: string };
const failed = (v: unknown): v is Failed => typeof v === 'object' && v !== null && 'error' in v && typeof (v as Failed).error === 'string';

/** What the drill's steps returned (or the error of a step that failed). */
export interface DrillFindings {
  backup:
    | {
        taken: boolean;
        artifacts: readonly { kind: string; id: string; size: number; createdAt: string }[];
        failures: readonly string[];
        ms: number;
      }
    | Failed;
  verify:
    | {
        checks: readonly {
          id: string;
          kind: string;
          ok: boolean;
          copies: readonly { url: string; ok: boolean; detail: string }[];
          decrypt: { ok: boolean; detail: string; plainBytes: number };
        }[];
        refusals: readonly { id: string; kind: string; refused: boolean; code: string }[];
      }
    | Failed;
  restore:
    | {
        runId: string;
        status: string;
        error: { code: string; message: string } | null;
        steps: readonly { id: string; status: string; durationMs: number; message?: string }[];
        /** The backup id the rebuild restored, by kind. */
        restored: Readonly<Record<string, string>> | null;
        rto: RtoTable | null;
        target: { name: string };
      }
    | Failed;
  validate:
    | {
        services: readonly { name: string; ok: boolean; evidence: string }[];
        integrity: readonly { name: string; ok: boolean; evidence: string }[];
      }
    | Failed
    | { error: string };
}

const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(1)} MB`;
/** "us-east-1" of an S3 store URL, else the URL's scheme and host. */
function placeOf(url: string): string {
  const region = /[?&]region=([^&]+)/.exec(url)?.[1];
  if (url.startsWith('s3://')) return `S3 ${url.slice(5).split(/[/?]/)[0]}${region ? ` (${region})` : ''}`;
  return url.startsWith('file://') ? `local disk ${url.slice(7)}` : url;
}

/**
 * Grades the first plan's test checklist ("Backup creation successful" … "Performance
 * acceptable") from the drill's findings. An item passes only on positive evidence: a step
 * that did not run fails every item that depends on it, with the reason.
 */
export function gradeChecklist(f: DrillFindings): Checklist {
  const items: ChecklistItem[] = [];
  const add = (id: string, title: string, passed: boolean, evidence: string) => items.push({ id, title, passed, evidence });

  // 1. Backup creation successful
  if (failed(f.backup)) add('backup-created', 'Backup creation successful', false, f.backup.error);
  else {
    const list = f.backup.artifacts.map((a) => `${a.kind} ${a.id} (${mb(a.size)})`).join(', ');
    add(
      'backup-created',
      'Backup creation successful',
      f.backup.failures.length === 0 && f.backup.artifacts.length > 0,
      f.backup.taken
        ? `${f.backup.artifacts.length} artifacts in ${formatElapsed(f.backup.ms)}: ${list}`
        : `the newest existing set (not taken by this drill): ${list}`,
    );
  }

  // 2. Backup encryption verified, 3. Backup uploaded to S3
  if (failed(f.verify)) {
    add('encryption-verified', 'Backup encryption verified', false, f.verify.error);
    add('uploaded-to-s3', 'Backup uploaded to S3', false, f.verify.error);
  } else {
    const bad = f.verify.checks.filter((c) => !c.decrypt.ok);
    const opened = f.verify.refusals.filter((r) => !r.refused);
    const plain = f.verify.checks.reduce((a, c) => a + c.decrypt.plainBytes, 0);
    const codes = [...new Set(f.verify.refusals.map((r) => r.code))].join(', ');
    add(
      'encryption-verified',
      'Backup encryption verified',
      f.verify.checks.length > 0 && bad.length === 0 && opened.length === 0 && f.verify.refusals.length === f.verify.checks.length,
      bad.length > 0
        ? bad.map((c) => `${c.kind} ${c.id}: ${c.decrypt.detail}`).join('; ')
        : opened.length > 0
          ? `${opened.map((r) => `${r.kind} ${r.id}`).join(', ')} opened without the backup key`
          : `${f.verify.checks.length} artifacts: every AES-256-GCM chunk authenticated with the backup key (${mb(plain)} decrypted); a random key was refused by each (${codes})`,
    );
    const s3 = new Set(f.verify.checks.flatMap((c) => c.copies.filter((k) => k.url.startsWith('s3://')).map((k) => k.url)));
    const copyFailures = f.verify.checks.flatMap((c) =>
      c.copies.filter((k) => !k.ok).map((k) => `${c.kind} ${c.id} on ${placeOf(k.url)}: ${k.detail}`),
    );
    const places = [...new Set(f.verify.checks.flatMap((c) => c.copies.map((k) => placeOf(k.url))))];
    add(
      'uploaded-to-s3',
      'Backup uploaded to S3',
      s3.size > 0 && copyFailures.length === 0 && f.verify.checks.length > 0,
      s3.size === 0
        ? `the store has no S3 copy (${places.join(', ')}): add s3:// URLs to stores.backups`
        : copyFailures.length > 0
          ? copyFailures.join('; ')
          : `${f.verify.checks.length} artifacts on ${places.join(', ')}: size and SHA-256 of each copy match the manifest`,
    );
  }

  // 4–7 from the rebuild's steps, 10 from its phases.
  const step = (id: string) => (failed(f.restore) ? undefined : f.restore.steps.find((s) => s.id === id));
  const drilled = new Map(failed(f.backup) ? [] : f.backup.artifacts.map((a) => [a.kind, a.id]));
  const stepItem = (itemId: string, title: string, stepIds: string[], what: string, kind?: string) => {
    if (failed(f.restore)) {
      add(itemId, title, false, f.restore.error);
      return;
    }
    const steps = stepIds.map((id) => ({ id, s: step(id) }));
    const bad = steps.find(({ s }) => s?.status !== 'succeeded');
    const restored = kind === undefined ? undefined : f.restore.restored?.[kind];
    if (bad)
      add(
        itemId,
        title,
        false,
        `${bad.id} ${bad.s?.status ?? 'not run'}${bad.s?.message ? `: ${bad.s.message}` : ''} (run ${f.restore.runId})`,
      );
    else if (kind !== undefined && restored !== drilled.get(kind))
      // "latest" skips a backup whose verification failed: then an older one was restored, which proves nothing about the drilled one.
      add(
        itemId,
        title,
        false,
        `the rebuild restored ${kind} ${restored ?? '(unknown)'}, not the drilled ${drilled.get(kind) ?? '(none)'}`,
      );
    else {
      const ms = steps.reduce((a, { s }) => a + (s?.durationMs ?? 0), 0);
      add(
        itemId,
        title,
        true,
        `${formatElapsed(ms)} into ${f.restore.target.name}${restored ? `, backup ${restored}` : ''}: ${what} (run ${f.restore.runId})`,
      );
    }
  };
  stepItem(
    'postgres-restored',
    'PostgreSQL restore successful',
    ['restore-postgres', 'verify-database'],
    'restored beside, verified against the backup fingerprint, swapped in; SELECT COUNT(*) checked',
    'postgres',
  );
  stepItem(
    'redis-restored',
    'Redis restore successful',
    ['restore-redis', 'verify-redis'],
    'RDB checked, placed and loaded; DBSIZE checked',
    'redis-rdb',
  );
  stepItem('files-restored', 'File restore successful', ['restore-files'], 'every file restored with its SHA-256 checked', 'files');
  stepItem(
    'app-started',
    'Application starts successfully',
    ['migrate', 'start-app', 'verify-api'],
    'migrations ran, the app started and its health endpoint answered',
  );

  // 8. All services healthy, 9. Data integrity verified
  if (failed(f.validate)) {
    add('services-healthy', 'All services healthy', false, f.validate.error);
    add('data-integrity', 'Data integrity verified', false, f.validate.error);
  } else {
    const v = f.validate as Exclude<DrillFindings['validate'], Failed>;
    const sick = v.services.filter((s) => !s.ok);
    add(
      'services-healthy',
      'All services healthy',
      v.services.length > 0 && sick.length === 0,
      (sick.length > 0 ? sick : v.services).map((s) => `${s.name}: ${s.evidence}`).join('; '),
    );
    const broken = v.integrity.filter((s) => !s.ok);
    add(
      'data-integrity',
      'Data integrity verified',
      v.integrity.length > 0 && broken.length === 0,
      v.integrity.length === 0
        ? 'nothing was compared'
        : (broken.length > 0 ? broken : v.integrity).map((s) => `${s.name}: ${s.evidence}`).join('; '),
    );
  }

  let recoveryMs: number | undefined;
  if (failed(f.restore) || f.restore.rto === null)
    add('performance', 'Performance acceptable', false, failed(f.restore) ? f.restore.error : 'the rebuild left no report to time');
  else {
    const rto = f.restore.rto;
    recoveryMs = rto.total.actualMs;
    const over = rto.phases.filter((p) => p.over);
    add(
      'performance',
      'Performance acceptable',
      f.restore.status === 'succeeded' && over.length === 0 && !rto.total.over,
      `rebuild ${formatElapsed(rto.total.actualMs)} of the ${formatElapsed(rto.total.budgetMs)} RTO; ${rto.phases
        .map((p) => `${p.name} ${formatElapsed(p.actualMs)}/${formatElapsed(p.budgetMs)}${p.over ? ' OVER' : ''}`)
        .join(', ')}${f.restore.status === 'succeeded' ? '' : ` (the rebuild ${f.restore.status}: not a full timing)`}`,
    );
  }
  return { items, ...(recoveryMs !== undefined ? { recoveryMs } : {}) };
}

/** What {@link renderDrillReport} needs. */
export interface DrillReportInput {
  environment: string;
  target: string;
  runId: string;
  startedAt: string;
  finishedAt: string;
  checklist: Checklist;
  copies: readonly string[];
  recovery: { runId: string; status: string; rto: RtoTable | null; recoveryReport: string | null } | null;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The RTO table as Markdown rows (also printed by `pnpm drill`). */
export function renderRtoTable(rto: RtoTable): string {
  return [
    '| phase | budget | actual | within budget |',
    '| --- | --- | --- | --- |',
    ...rto.phases.map((p) => `| ${p.name} | ${formatElapsed(p.budgetMs)} | ${formatElapsed(p.actualMs)} | ${p.over ? 'no' : 'yes'} |`),
    `| **total (RTO)** | ${formatElapsed(rto.total.budgetMs)} | ${formatElapsed(rto.total.actualMs)} | ${rto.total.over ? 'no' : 'yes'} |`,
  ].join('\n');
}

/** The drill's test report, in Markdown: the plan's drill deliverable. */
export function renderDrillReport(r: DrillReportInput): string {
  const passed = r.checklist.items.filter((i) => i.passed).length;
  const total = r.checklist.items.length;
  const ok = passed === total;
  const issues = r.checklist.items.filter((i) => !i.passed);
  return [
    `# DR drill test report: ${r.environment}`,
    '',
    `**Result: ${ok ? 'PASSED' : 'FAILED'}**, ${passed} of ${total} checklist items passed.`,
    '',
    '| | |',
    '| --- | --- |',
    `| environment drilled | ${r.environment} |`,
    `| rebuilt into | ${r.target === 'scratch' ? 'scratch servers on the drill machine' : r.target} |`,
    `| backups | ${cell(r.copies.join(', '))} |`,
    `| started | ${r.startedAt} |`,
    `| finished | ${r.finishedAt} |`,
    `| drill run | ${r.runId} |`,
    `| rebuild run | ${r.recovery ? `${r.recovery.runId} (complete-system-failure, ${r.recovery.status})` : 'did not run'} |`,
    '',
    '## Test checklist',
    '',
    '| | item | evidence |',
    '| --- | --- | --- |',
    ...r.checklist.items.map((i) => `| ${i.passed ? '✅' : '❌'} | ${i.title} | ${cell(i.evidence)} |`),
    '',
    '## Recovery time',
    '',
    r.recovery?.rto ? renderRtoTable(r.recovery.rto) : 'The rebuild did not run, so nothing was timed.',
    '',
    '## Issues found',
    '',
    ...(issues.length === 0 ? ['None.'] : issues.map((i) => `- **${i.title}**: ${i.evidence}`)),
    '',
    '## For the team',
    '',
    '- [ ] Documentation updated: review the runbooks and the DR plan against what this drill found.',
    '- [ ] Procedures updated as needed, and every issue above has an owner.',
    '',
    ...(r.recovery?.recoveryReport ? ['## Appendix: the rebuild’s report', '', r.recovery.recoveryReport.replace(/^#/gm, '##')] : []),
  ].join('\n');
}
