// The recovery report is shared by every WalletRecovery implementation: how it concludes, what
// it asks people to do, and the two forms it is filed in (Markdown for the incident, JSON for tools).
import { HaltError } from '../errors.js';
import type { AuditedTransaction, IntegrityCheck, RecoveryReport, TransactionAudit, WalletIntegrity } from './types.js';

/** The `schema` of {@link RecoveryReportJson}; bumped on any incompatible change. */
export const RECOVERY_REPORT_SCHEMA = 'drkit.wallet-recovery/1';

/** A {@link RecoveryReport} as plain JSON: dates are ISO 8601 strings. */
export interface RecoveryReportJson {
  schema: typeof RECOVERY_REPORT_SCHEMA;
  generatedAt: string;
  conclusion: RecoveryReport['conclusion'];
  halt?: NonNullable<RecoveryReport['halt']>;
  integrity: { ok: boolean; checkedAt: string; wallets: { address: string; ok: boolean; checks: IntegrityCheck[] }[] };
  audit: {
    ok: boolean;
    last: number;
    examined: number;
    transactions: (Omit<AuditedTransaction, 'at'> & { at: string })[];
    anomalies: TransactionAudit['anomalies'];
  };
  nextSteps: string[];
}

// Urgent first: a changed key can still be used to move funds, a missing wallet may already be gone.
const CHECK_PRIORITY: Record<string, number> = { 'key-fingerprint': 0, present: 1 };

function stepFor(address: string, check: IntegrityCheck): string {
  switch (check.name) {
    case 'key-fingerprint':
      return `rotate the keys of wallet ${address} and treat the old key as compromised: ${check.detail}`;
    case 'present':
      return `locate wallet ${address}: ${check.detail}`;
    case 'balance':
      return `reconcile the balance of wallet ${address} with the chain: ${check.detail}`;
    case 'running-balance':
      return `restore the entries of wallet ${address} from the chain or a backup: ${check.detail}`;
    case 'hash-chain':
      return `restore the missing or altered entries of wallet ${address} from the chain or a backup: ${check.detail}`;
    default:
      return `resolve the failed check "${check.name}" of wallet ${address}: ${check.detail}`;
  }
}

/**
 * Concludes a recovery from its two results: an integrity failure outranks anomalies (a
 * ledger that cannot be trusted makes its audit moot), and the next steps come most urgent
 * first: the halt, key rotation, the ledger repairs, then each flagged transaction.
 */
export function buildRecoveryReport(input: {
  integrity: WalletIntegrity;
  audit: TransactionAudit;
  halt?: RecoveryReport['halt'];
  generatedAt?: Date;
}): RecoveryReport {
  const { integrity, audit, halt } = input;
  const conclusion: RecoveryReport['conclusion'] = !integrity.ok ? 'integrity-failed' : audit.ok ? 'clean' : 'anomalies-found';
  const nextSteps: string[] = [];

  if (conclusion !== 'clean') {
    if (halt === undefined)
      nextSteps.push('check the halt state (haltStatus) and keep trading halted until the steps below are done and a new report is clean');
    else if (!halt.halted)
      nextSteps.push(`engage the trading halt now (engageHalt): trading is not halted (epoch ${halt.epoch}) and the wallets are not clean`);
    else nextSteps.push(`keep trading halted (epoch ${halt.epoch}) until the steps below are done and a new report is clean`);
  }

  const failed = integrity.wallets.flatMap((w) => w.checks.filter((c) => !c.ok).map((check) => ({ address: w.address, check })));
  const rank = (name: string) => CHECK_PRIORITY[name] ?? 2;
  // Stable sort: within one rank, wallets keep their order.
  failed.sort((a, b) => rank(a.check.name) - rank(b.check.name));
  for (const { address, check } of failed) nextSteps.push(stepFor(address, check));

  for (const tx of audit.transactions) {
    if (tx.flags.length === 0) continue;
    nextSteps.push(
      `investigate tx ${tx.hash} (wallet ${tx.wallet}, block ${tx.block}, ${tx.direction} ${tx.amount}): ${tx.flags.join(', ')}`,
    );
  }

  if (conclusion === 'clean') {
    nextSteps.push(
      `no wallet action needed: integrity verified for ${integrity.wallets.length} wallet(s) and the last ${audit.examined} transaction(s) show no anomalies`,
    );
    if (halt?.halted)
      nextSteps.push(`release the halt (epoch ${halt.epoch}) with a second approver once the rest of the recovery is complete`);
  } else {
    nextSteps.push('run the recovery report again after the fixes and file both reports with the incident');
  }

  const report: RecoveryReport = { generatedAt: input.generatedAt ?? new Date(), integrity, audit, conclusion, nextSteps };
  if (halt !== undefined) report.halt = halt;
  return report;
}

/**
 * Throws unless every wallet passed every check: for a runbook step that must stop there.
 * @throws HaltError HALT_WALLET_INTEGRITY naming each failed wallet and check (also in `details.failed`)
 */
export function assertWalletIntegrity(integrity: WalletIntegrity): void {
  if (integrity.ok) return;
  const failed = integrity.wallets.flatMap((w) =>
    w.checks.filter((c) => !c.ok).map((c) => ({ address: w.address, check: c.name, detail: c.detail })),
  );
  throw new HaltError(
    'HALT_WALLET_INTEGRITY',
    `wallet integrity failed: ${failed.map((f) => f.detail).join('; ') || 'no check passed'}. Keep trading halted and restore the ledger and keys before going on.`,
    { details: { failed } },
  );
}

const CONCLUSION_TEXT: Record<RecoveryReport['conclusion'], string> = {
  clean: 'Clean: every wallet passed its integrity checks and no audited transaction has an anomaly.',
  'anomalies-found': 'Anomalies found: the wallets are intact but some transactions need investigation.',
  'integrity-failed': 'Integrity failed: at least one wallet failed a check. Its ledger and keys cannot be trusted until restored.',
};

/** Text that stays one table cell or list item: the values come from the ledger, which may be tampered with. */
function cell(value: string | number): string {
  return String(value)
    .replace(/\r\n|\r|\n/g, ' ')
    .replace(/[\\`*_[\]<>|]/g, '\\$&');
}

function table(header: string[], rows: (string | number)[][]): string[] {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)];
}

/** The report as Markdown, for the incident record: conclusion, halt, integrity, anomalies, transactions, next steps. */
export function renderRecoveryReport(report: RecoveryReport): string {
  const { integrity, audit, halt } = report;
  const lines: string[] = ['# Wallet recovery report', '', `Generated: ${report.generatedAt.toISOString()}`, ''];

  lines.push('## Conclusion', '', `**${report.conclusion}**: ${CONCLUSION_TEXT[report.conclusion]}`, '');

  lines.push('## Halt state', '');
  if (halt === undefined) lines.push('Not recorded with this report: check it with `drkit halt status`.');
  else {
    lines.push(`- Halted: ${halt.halted ? 'yes' : 'no'}`, `- Epoch: ${halt.epoch}`);
    if (halt.reason !== undefined) lines.push(`- Reason: ${cell(halt.reason)}`);
    if (halt.actor !== undefined) lines.push(`- Actor: ${cell(halt.actor)}`);
  }
  lines.push('');

  const failedWallets = integrity.wallets.filter((w) => !w.ok).length;
  lines.push(
    '## Wallet integrity',
    '',
    `Checked at ${integrity.checkedAt.toISOString()}: ${integrity.wallets.length} wallet(s), ${failedWallets} failed.`,
    '',
  );
  if (integrity.wallets.length === 0) lines.push('No wallets.');
  else
    lines.push(
      ...table(
        ['Wallet', 'Check', 'Result', 'Detail'],
        integrity.wallets.flatMap((w) => w.checks.map((c) => [w.address, c.name, c.ok ? 'ok' : 'FAILED', c.detail])),
      ),
    );
  lines.push('');

  lines.push('## Anomalies', '');
  if (audit.anomalies.length === 0) lines.push('None.');
  else
    lines.push(
      ...table(
        ['Transaction', 'Flag', 'Detail'],
        audit.anomalies.map((a) => [a.hash, a.flag, a.detail]),
      ),
    );
  lines.push('');

  lines.push('## Audited transactions', '', `The last ${audit.last} requested, ${audit.examined} examined, newest first.`, '');
  if (audit.transactions.length === 0) lines.push('No transactions.');
  else
    lines.push(
      ...table(
        ['Block', 'Time', 'Wallet', 'Direction', 'Amount', 'Counterparty', 'Transaction', 'Flags'],
        audit.transactions.map((t) => [
          t.block,
          t.at.toISOString(),
          t.wallet,
          t.direction,
          t.amount,
          t.counterparty,
          t.hash,
          t.flags.join(', '),
        ]),
      ),
    );
  lines.push('');

  lines.push('## Next steps', '');
  if (report.nextSteps.length === 0) lines.push('None.');
  else lines.push(...report.nextSteps.map((step, i) => `${i + 1}. ${cell(step)}`));
  lines.push('');
  return lines.join('\n');
}

/** The report as a plain JSON-safe object (schema {@link RECOVERY_REPORT_SCHEMA}), with only the documented fields. */
export function recoveryReportJson(report: RecoveryReport): RecoveryReportJson {
  const json: RecoveryReportJson = {
    schema: RECOVERY_REPORT_SCHEMA,
    generatedAt: report.generatedAt.toISOString(),
    conclusion: report.conclusion,
    integrity: {
      ok: report.integrity.ok,
      checkedAt: report.integrity.checkedAt.toISOString(),
      wallets: report.integrity.wallets.map((w) => ({
        address: w.address,
        ok: w.ok,
        checks: w.checks.map((c) => ({ name: c.name, ok: c.ok, detail: c.detail })),
      })),
    },
    audit: {
      ok: report.audit.ok,
      last: report.audit.last,
      examined: report.audit.examined,
      transactions: report.audit.transactions.map((t) => ({
        hash: t.hash,
        wallet: t.wallet,
        counterparty: t.counterparty,
        direction: t.direction,
        amount: t.amount,
        block: t.block,
        at: t.at.toISOString(),
        flags: [...t.flags],
      })),
      anomalies: report.audit.anomalies.map((a) => ({ hash: a.hash, flag: a.flag, detail: a.detail })),
    },
    nextSteps: [...report.nextSteps],
  };
  if (report.halt !== undefined) {
    const halt: NonNullable<RecoveryReport['halt']> = { halted: report.halt.halted, epoch: report.halt.epoch };
    if (report.halt.reason !== undefined) halt.reason = report.halt.reason;
    if (report.halt.actor !== undefined) halt.actor = report.halt.actor;
    json.halt = halt;
  }
  return json;
}

// Parsing: a report read back from a file or a ticket is checked field by field, so a
// truncated or hand-edited one is refused with the path of what is wrong.

function bad(path: string, what: string): HaltError {
  return new HaltError('HALT_INVALID_INPUT', `not a ${RECOVERY_REPORT_SCHEMA} report: ${path} ${what}`);
}

function obj(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(path, 'must be an object');
  return value as Record<string, unknown>;
}

function arr(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) throw bad(path, 'must be an array');
  return value;
}

function str(value: unknown, path: string): string {
  if (typeof value !== 'string') throw bad(path, 'must be a string');
  return value;
}

function bool(value: unknown, path: string): boolean {
  if (typeof value !== 'boolean') throw bad(path, 'must be a boolean');
  return value;
}

function int(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw bad(path, 'must be a non-negative integer');
  return value;
}

function date(value: unknown, path: string): Date {
  const text = str(value, path);
  const parsed = new Date(text);
  if (Number.isNaN(parsed.getTime()) || parsed.toISOString() !== text) throw bad(path, 'must be an ISO 8601 date (toISOString)');
  return parsed;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], path: string): T {
  if (!allowed.includes(value as T)) throw bad(path, `must be one of ${allowed.join(', ')}`);
  return value as T;
}

/**
 * Reads a report back from {@link recoveryReportJson}'s form (e.g. after JSON.parse).
 * @throws HaltError HALT_INVALID_INPUT naming the first field that is missing or wrong
 */
export function recoveryReportFromJson(value: unknown): RecoveryReport {
  const root = obj(value, '$');
  if (root.schema !== RECOVERY_REPORT_SCHEMA) throw bad('$.schema', `must be "${RECOVERY_REPORT_SCHEMA}"`);
  const integrity = obj(root.integrity, '$.integrity');
  const audit = obj(root.audit, '$.audit');
  const report: RecoveryReport = {
    generatedAt: date(root.generatedAt, '$.generatedAt'),
    conclusion: oneOf(root.conclusion, ['clean', 'anomalies-found', 'integrity-failed'] as const, '$.conclusion'),
    integrity: {
      ok: bool(integrity.ok, '$.integrity.ok'),
      checkedAt: date(integrity.checkedAt, '$.integrity.checkedAt'),
      wallets: arr(integrity.wallets, '$.integrity.wallets').map((w, i) => {
        const p = `$.integrity.wallets[${i}]`;
        const wallet = obj(w, p);
        return {
          address: str(wallet.address, `${p}.address`),
          ok: bool(wallet.ok, `${p}.ok`),
          checks: arr(wallet.checks, `${p}.checks`).map((c, j) => {
            const check = obj(c, `${p}.checks[${j}]`);
            return {
              name: str(check.name, `${p}.checks[${j}].name`),
              ok: bool(check.ok, `${p}.checks[${j}].ok`),
              detail: str(check.detail, `${p}.checks[${j}].detail`),
            };
          }),
        };
      }),
    },
    audit: {
      ok: bool(audit.ok, '$.audit.ok'),
      last: int(audit.last, '$.audit.last'),
      examined: int(audit.examined, '$.audit.examined'),
      transactions: arr(audit.transactions, '$.audit.transactions').map((t, i) => {
        const p = `$.audit.transactions[${i}]`;
        const tx = obj(t, p);
        return {
          hash: str(tx.hash, `${p}.hash`),
          wallet: str(tx.wallet, `${p}.wallet`),
          counterparty: str(tx.counterparty, `${p}.counterparty`),
          direction: oneOf(tx.direction, ['in', 'out'] as const, `${p}.direction`),
          amount: str(tx.amount, `${p}.amount`),
          block: int(tx.block, `${p}.block`),
          at: date(tx.at, `${p}.at`),
          flags: arr(tx.flags, `${p}.flags`).map((f, j) => str(f, `${p}.flags[${j}]`)),
        };
      }),
      anomalies: arr(audit.anomalies, '$.audit.anomalies').map((a, i) => {
        const p = `$.audit.anomalies[${i}]`;
        const anomaly = obj(a, p);
        return { hash: str(anomaly.hash, `${p}.hash`), flag: str(anomaly.flag, `${p}.flag`), detail: str(anomaly.detail, `${p}.detail`) };
      }),
    },
    nextSteps: arr(root.nextSteps, '$.nextSteps').map((s, i) => str(s, `$.nextSteps[${i}]`)),
  };
  if (root.halt !== undefined) {
    const h = obj(root.halt, '$.halt');
    const halt: NonNullable<RecoveryReport['halt']> = { halted: bool(h.halted, '$.halt.halted'), epoch: int(h.epoch, '$.halt.epoch') };
    if (h.reason !== undefined) halt.reason = str(h.reason, '$.halt.reason');
    if (h.actor !== undefined) halt.actor = str(h.actor, '$.halt.actor');
    report.halt = halt;
  }
  return report;
}
