import { type PostgresSandbox, startPostgres } from '@drkit/sandbox';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAudit, migrateAudit } from '../src/audit.js';
import { isHaltError } from '../src/errors.js';
import {
  addLedgerWallet,
  appendLedgerEntries,
  assertWalletIntegrity,
  createLedgerWallet,
  type LedgerEntry,
  type LedgerEntryInput,
  type LedgerWalletOptions,
  migrateLedger,
  RECOVERY_REPORT_SCHEMA,
  type RecoveryReport,
  recoveryReportFromJson,
  recoveryReportJson,
  renderRecoveryReport,
  type WalletIntegrity,
} from '../src/wallet/index.js';

let server: PostgresSandbox;
let pool: pg.Pool;

beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ ...server.connection(), max: 8 });
  // The server going away at teardown reaches idle clients as an error event; it is expected then.
  pool.on('error', () => {});
  await migrateAudit(pool);
});
afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

const A = 'wallet-a';
const B = 'wallet-b';
const FINGERPRINTS = { [A]: 'SHA256:aaaa1111', [B]: 'SHA256:bbbb2222' };
const COUNTERPARTIES = ['cp-exchange', 'cp-custody', 'cp-payroll'];
const START = Date.UTC(2025, 0, 1);
// Far below what a double can tell from 0: it must survive the round trip as text.
const DUST = '0.000000000000000001';

/** 150 entries alternating between the two wallets, two per block, each wallet funded first. */
function cleanEntries(): LedgerEntryInput[] {
  return Array.from({ length: 150 }, (_, i) => ({
    wallet: i % 2 === 0 ? A : B,
    counterparty: COUNTERPARTIES[i % 3] as string,
    direction: i < 2 || i % 3 !== 0 ? ('in' as const) : ('out' as const),
    amount: i < 2 ? '100000.00' : i === 77 ? DUST : `${((i * 37) % 500) + 1}.${String((i * 13) % 100).padStart(2, '0')}`,
    block: 1000 + Math.floor(i / 2),
    at: new Date(START + i * 60_000),
  }));
}

let schemas = 0;

/** A fresh ledger in its own schema, so each test tampers with its own copy. */
async function cleanLedger(name: string): Promise<{ schema: string; entries: LedgerEntry[] }> {
  const schema = `wallet_${++schemas}_${name}`;
  await migrateLedger(pool, { schema });
  await addLedgerWallet(pool, { address: A, keyFingerprint: FINGERPRINTS[A] }, { schema });
  await addLedgerWallet(pool, { address: B, keyFingerprint: FINGERPRINTS[B] }, { schema });
  const entries = await appendLedgerEntries(pool, cleanEntries(), { schema });
  return { schema, entries };
}

function recovery(schema: string, options: Partial<LedgerWalletOptions> = {}) {
  return createLedgerWallet({
    db: pool,
    schema,
    expectedKeyFingerprints: FINGERPRINTS,
    allowedCounterparties: COUNTERPARTIES,
    largeAmount: '50000',
    ...options,
  });
}

function entryAt(entries: LedgerEntry[], i: number): LedgerEntry {
  const entry = entries[i];
  if (!entry) throw new Error(`no entry ${i}`);
  return entry;
}

function check(integrity: WalletIntegrity, address: string, name: string) {
  const wallet = integrity.wallets.find((w) => w.address === address);
  const found = wallet?.checks.find((c) => c.name === name);
  if (!found) throw new Error(`no check ${name} for ${address}`);
  return found;
}

function failedChecks(integrity: WalletIntegrity): string[] {
  return integrity.wallets.flatMap((w) => w.checks.filter((c) => !c.ok).map((c) => `${w.address}:${c.name}`));
}

async function eventsOf(schema: string) {
  return (await listAudit(pool, { limit: 10_000 })).filter((e) => e.scope === `ledger:${schema}`);
}

async function refusal(work: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof work === 'function' ? work() : work);
  } catch (error) {
    return error;
  }
  throw new Error('expected a refusal');
}

describe('a clean ledger', () => {
  it('passes integrity, audits exactly the 100 newest entries and concludes clean', async () => {
    const { schema, entries } = await cleanLedger('clean');
    const report = await recovery(schema).recoveryReport();

    expect(report.integrity.ok).toBe(true);
    expect(report.integrity.wallets.map((w) => w.address)).toEqual([A, B]);
    for (const wallet of report.integrity.wallets) {
      expect(wallet.ok).toBe(true);
      expect(wallet.checks.map((c) => c.name)).toEqual(['balance', 'running-balance', 'hash-chain', 'key-fingerprint']);
    }
    expect(check(report.integrity, A, 'balance').detail).toContain('sum of its 75 ledger entries');

    expect(report.audit).toMatchObject({ ok: true, last: 100, examined: 100, anomalies: [] });
    // Newest first by block then id: the reverse of the append order.
    expect(report.audit.transactions.map((t) => t.hash)).toEqual(
      entries
        .slice(-100)
        .reverse()
        .map((e) => e.hash),
    );
    const newest = entryAt(entries, 149);
    expect(report.audit.transactions[0]).toEqual({
      hash: newest.hash,
      wallet: B,
      counterparty: newest.counterparty,
      direction: newest.direction,
      amount: newest.amount,
      block: 1074,
      at: new Date(START + 149 * 60_000),
      flags: [],
    });
    expect(report.audit.transactions.find((t) => t.hash === entryAt(entries, 77).hash)?.amount).toBe(DUST);

    expect(report.conclusion).toBe('clean');
    expect(report.halt).toBeUndefined();
    expect(report.nextSteps).toEqual([
      'no wallet action needed: integrity verified for 2 wallet(s) and the last 100 transaction(s) show no anomalies',
    ]);
  });

  it('keeps amounts as decimal text: scale, dust and a threshold a float would round onto', async () => {
    const { schema } = await cleanLedger('decimals');
    const extra = await appendLedgerEntries(
      pool,
      [
        { wallet: A, counterparty: 'cp-exchange', direction: 'in', amount: '49999.999999999999999999', block: 2000, at: new Date(START) },
        { wallet: A, counterparty: 'cp-exchange', direction: 'in', amount: '50000.000', block: 2001, at: new Date(START) },
        { wallet: A, counterparty: 'cp-exchange', direction: 'out', amount: '0.10', block: 2002, at: new Date(START) },
      ],
      { schema },
    );
    const audit = await recovery(schema).auditTransactions({ last: 3 });
    expect(audit.transactions.map((t) => [t.amount, t.flags])).toEqual([
      ['0.10', []],
      ['50000.000', ['large-amount']],
      ['49999.999999999999999999', []],
    ]);
    // Exact to the last of 18 decimals: checked with integers of the smallest unit.
    const units = (text: string) => {
      const [whole = '0', fraction = ''] = text.split('.');
      return BigInt(whole + fraction.padEnd(18, '0'));
    };
    const before =
      (
        await pool.query<{ b: string }>(
          `SELECT balance_after::text AS b FROM ${schema}.ledger WHERE wallet = $1 ORDER BY id DESC OFFSET 3 LIMIT 1`,
          [A],
        )
      ).rows[0]?.b ?? '';
    expect(units(entryAt(extra, 2).balanceAfter)).toBe(units(before) + units('49999.999999999999999999') + units('50000') - units('0.1'));
    expect(entryAt(extra, 2).balanceAfter).toMatch(/^\d+\.\d{18}$/);
    expect((await recovery(schema).verifyWalletIntegrity()).ok).toBe(true);
  });

  it('without an inventory of keys, no key check is made; an empty ledger is clean', async () => {
    const { schema } = await cleanLedger('nokeys');
    const integrity = await createLedgerWallet({ db: pool, schema }).verifyWalletIntegrity();
    expect(integrity.ok).toBe(true);
    expect(integrity.wallets[0]?.checks.map((c) => c.name)).toEqual(['balance', 'running-balance', 'hash-chain']);

    const empty = 'wallet_empty';
    await migrateLedger(pool, { schema: empty });
    const report = await createLedgerWallet({ db: pool, schema: empty }).recoveryReport();
    expect(report).toMatchObject({ conclusion: 'clean', integrity: { ok: true, wallets: [] }, audit: { examined: 0, transactions: [] } });
  });
});

describe('tampering is detected, naming the wallet and the entry', () => {
  it('a changed amount: balance mismatch from that entry on', async () => {
    const { schema, entries } = await cleanLedger('amount');
    const target = entryAt(entries, 40);
    await pool.query(`UPDATE ${schema}.ledger SET amount = amount + 1 WHERE hash = $1`, [target.hash]);

    const wallet = recovery(schema);
    const integrity = await wallet.verifyWalletIntegrity();
    expect(integrity.ok).toBe(false);
    expect(failedChecks(integrity)).toEqual([`${A}:balance`, `${A}:running-balance`]);
    const running = check(integrity, A, 'running-balance').detail;
    expect(running).toContain(`wallet ${A}`);
    expect(running).toContain(`entry #${target.id} (tx ${target.hash})`);
    expect(running).toContain(`balance_after ${target.balanceAfter}`);
    expect(check(integrity, A, 'balance').detail).toContain(`first bad entry: entry #${target.id} (tx ${target.hash})`);
    expect(() => assertWalletIntegrity(integrity)).toThrow(expect.objectContaining({ code: 'HALT_WALLET_INTEGRITY' }));

    const audit = await wallet.auditTransactions({ last: 150 });
    const flagged = audit.transactions.filter((t) => t.flags.includes('balance-mismatch'));
    // The tampered entry and every later entry of the same wallet disagree with their running sum.
    expect(flagged[flagged.length - 1]?.hash).toBe(target.hash);
    expect(flagged.every((t) => t.wallet === A)).toBe(true);

    const report = await wallet.recoveryReport({ last: 150 });
    expect(report.conclusion).toBe('integrity-failed');
    expect(report.nextSteps[0]).toMatch(/^check the halt state/);
    expect(report.nextSteps.some((s) => s.startsWith(`restore the entries of wallet ${A}`) && s.includes(target.hash))).toBe(true);
    const tampered = await amountOf(schema, target.hash);
    expect(tampered).not.toBe(target.amount);
    expect(report.nextSteps).toContain(
      `investigate tx ${target.hash} (wallet ${A}, block ${target.block}, ${target.direction} ${tampered}): balance-mismatch`,
    );
  });

  it('a deleted row: the chain breaks at the next entry of that wallet', async () => {
    const { schema, entries } = await cleanLedger('deleted');
    const deleted = entryAt(entries, 60);
    const next = entryAt(entries, 62);
    expect(next.wallet).toBe(deleted.wallet);
    await pool.query(`DELETE FROM ${schema}.ledger WHERE hash = $1`, [deleted.hash]);

    const wallet = recovery(schema);
    const integrity = await wallet.verifyWalletIntegrity();
    expect(failedChecks(integrity)).toEqual([`${A}:balance`, `${A}:running-balance`, `${A}:hash-chain`]);
    const chain = check(integrity, A, 'hash-chain').detail;
    expect(chain).toContain(`wallet ${A}: entry #${next.id} (tx ${next.hash}) has prev_hash ${deleted.hash}`);
    expect(chain).toContain(`the entry before it is tx ${entryAt(entries, 58).hash}`);
    expect(chain).toContain(`tx ${deleted.hash} is not in the ledger (deleted?)`);
    expect(check(integrity, A, 'running-balance').detail).toContain(`entry #${next.id}`);

    const audit = await wallet.auditTransactions({ last: 150 });
    expect(audit.transactions.find((t) => t.hash === next.hash)?.flags).toEqual(['balance-mismatch', 'chain-break']);
    expect(audit.transactions.filter((t) => t.flags.includes('chain-break')).map((t) => t.hash)).toEqual([next.hash]);
    expect(audit.anomalies).toContainEqual({
      hash: next.hash,
      flag: 'chain-break',
      detail: `wallet ${A}: prev_hash ${deleted.hash} but the entry before it is tx ${entryAt(entries, 58).hash}`,
    });
  });

  it('a changed key fingerprint: the key was changed, rotate it first', async () => {
    const { schema } = await cleanLedger('key');
    await pool.query(`UPDATE ${schema}.wallets SET key_fingerprint = 'SHA256:evil' WHERE address = $1`, [B]);

    const report = await recovery(schema).recoveryReport({ halt: { halted: true, epoch: 4, reason: 'key leak', actor: 'alice' } });
    expect(failedChecks(report.integrity)).toEqual([`${B}:key-fingerprint`]);
    expect(check(report.integrity, B, 'key-fingerprint').detail).toBe(
      `wallet ${B}: key fingerprint SHA256:evil, expected ${FINGERPRINTS[B]}: the key was changed`,
    );
    expect(report.conclusion).toBe('integrity-failed');
    expect(report.nextSteps[0]).toBe('keep trading halted (epoch 4) until the steps below are done and a new report is clean');
    expect(report.nextSteps[1]).toMatch(new RegExp(`^rotate the keys of wallet ${B} `));
  });

  it('a wallet balance edited: the wallet row disagrees with its consistent entries', async () => {
    const { schema, entries } = await cleanLedger('balance');
    await pool.query(`UPDATE ${schema}.wallets SET balance = balance + 1000 WHERE address = $1`, [A]);
    const last = entryAt(entries, 148);

    const integrity = await recovery(schema).verifyWalletIntegrity();
    expect(failedChecks(integrity)).toEqual([`${A}:balance`]);
    const detail = check(integrity, A, 'balance').detail;
    expect(detail).toContain(`wallet ${A}: balance `);
    expect(detail).toContain(`but its 75 ledger entries sum to ${last.balanceAfter}`);
    expect(detail).toContain(`entry #${last.id} (tx ${last.hash}) with balance_after ${last.balanceAfter}`);
  });

  it('against an inventory: a missing wallet and an added one fail', async () => {
    const { schema } = await cleanLedger('inventory');
    const integrity = await recovery(schema, {
      expectedKeyFingerprints: { [A]: FINGERPRINTS[A], 'wallet-c': 'SHA256:cccc' },
    }).verifyWalletIntegrity();
    expect(failedChecks(integrity)).toEqual([`${B}:key-fingerprint`, 'wallet-c:present']);
    expect(check(integrity, B, 'key-fingerprint').detail).toContain('not among the expected wallets');
    expect(check(integrity, 'wallet-c', 'present').detail).toBe(
      'wallet wallet-c (key fingerprint SHA256:cccc) is expected but not in the ledger',
    );
  });
});

async function amountOf(schema: string, hash: string): Promise<string> {
  const { rows } = await pool.query<{ amount: string }>(`SELECT amount::text AS amount FROM ${schema}.ledger WHERE hash = $1`, [hash]);
  return rows[0]?.amount ?? '';
}

describe('transaction anomalies', () => {
  it('flags an unknown counterparty and a large amount, and concludes anomalies-found', async () => {
    const { schema } = await cleanLedger('flags');
    const [unknown, large] = await appendLedgerEntries(
      pool,
      [
        { wallet: A, counterparty: 'cp-stranger', direction: 'out', amount: '12.00', block: 1100, at: new Date(START) },
        { wallet: B, counterparty: 'cp-exchange', direction: 'in', amount: '250000.00', block: 1101, at: new Date(START) },
      ],
      { schema },
    );
    if (!unknown || !large) throw new Error('not appended');

    const report = await recovery(schema).recoveryReport({ last: 10, halt: { halted: false, epoch: 2 } });
    expect(report.integrity.ok).toBe(true);
    expect(report.audit.ok).toBe(false);
    expect(report.audit.transactions.slice(0, 3).map((t) => [t.hash, t.flags])).toEqual([
      [large.hash, ['large-amount']],
      [unknown.hash, ['unknown-counterparty']],
      [expect.any(String), []],
    ]);
    expect(report.audit.anomalies).toEqual([
      { hash: large.hash, flag: 'large-amount', detail: 'amount 250000.00 is at least the large-amount threshold 50000' },
      {
        hash: unknown.hash,
        flag: 'unknown-counterparty',
        detail: `counterparty cp-stranger of wallet ${A} is not an allowed counterparty`,
      },
    ]);
    expect(report.conclusion).toBe('anomalies-found');
    expect(report.nextSteps).toEqual([
      'engage the trading halt now (engageHalt): trading is not halted (epoch 2) and the wallets are not clean',
      `investigate tx ${large.hash} (wallet ${B}, block 1101, in 250000.00): large-amount`,
      `investigate tx ${unknown.hash} (wallet ${A}, block 1100, out 12.00): unknown-counterparty`,
      'run the recovery report again after the fixes and file both reports with the incident',
    ]);
  });

  it('flags a block out of order and, when asked, a burst of payments to one counterparty', async () => {
    const { schema } = await cleanLedger('order');
    const appended = await appendLedgerEntries(
      pool,
      [
        { wallet: A, counterparty: 'cp-payroll', direction: 'out', amount: '5', block: 1200, at: new Date(START) },
        { wallet: A, counterparty: 'cp-payroll', direction: 'out', amount: '5', block: 1201, at: new Date(START) },
        { wallet: A, counterparty: 'cp-payroll', direction: 'out', amount: '5', block: 1201, at: new Date(START) },
        // Recorded after block 1201 but claims block 900: back-dated.
        { wallet: B, counterparty: 'cp-custody', direction: 'in', amount: '1', block: 900, at: new Date(START) },
      ],
      { schema },
    );
    const hashes = appended.map((e) => e.hash);
    const flagsOf = (audit: { transactions: { hash: string; flags: string[] }[] }) =>
      hashes.map((h) => audit.transactions.find((t) => t.hash === h)?.flags);

    expect(flagsOf(await recovery(schema).auditTransactions({ last: 150 }))).toEqual([[], [], [], ['block-out-of-order']]);
    const burst = await recovery(schema, { burst: { count: 3, blocks: 2 } }).auditTransactions({ last: 150 });
    expect(flagsOf(burst)).toEqual([[], ['duplicate-counterparty-burst'], ['duplicate-counterparty-burst'], ['block-out-of-order']]);
    expect(burst.anomalies).toContainEqual({
      hash: hashes[1],
      flag: 'duplicate-counterparty-burst',
      detail: `wallet ${A}: 3 outgoing transactions to cp-payroll within 2 block(s) up to block 1201`,
    });
    expect(burst.anomalies.find((a) => a.flag === 'block-out-of-order')?.detail).toBe(
      `wallet ${B}: block 900 recorded after an entry in block 1074`,
    );
  });
});

describe('the recovery report', () => {
  async function anomalousReport(): Promise<{ report: RecoveryReport; schema: string }> {
    const { schema } = await cleanLedger('report');
    await appendLedgerEntries(
      pool,
      [{ wallet: A, counterparty: 'evil|cp\n# injected <b>', direction: 'out', amount: '1.50', block: 1100, at: new Date(START) }],
      { schema },
    );
    const report = await recovery(schema, { actor: 'carol' }).recoveryReport({
      last: 20,
      // A HaltState carries more than the report keeps.
      halt: { halted: true, epoch: 7, reason: 'hot wallet key leaked', actor: 'alice', scope: 'all' } as RecoveryReport['halt'],
    });
    return { report, schema };
  }

  it('renders Markdown with every section, one table row per transaction, and nothing injected', async () => {
    const { report } = await anomalousReport();
    const md = renderRecoveryReport(report);
    const headings = md.split('\n').filter((l) => l.startsWith('#'));
    expect(headings).toEqual([
      '# Wallet recovery report',
      '## Conclusion',
      '## Halt state',
      '## Wallet integrity',
      '## Anomalies',
      '## Audited transactions',
      '## Next steps',
    ]);
    expect(md).toContain('**anomalies-found**');
    expect(md).toContain('- Halted: yes\n- Epoch: 7\n- Reason: hot wallet key leaked\n- Actor: alice');
    expect(md).toContain('| Wallet | Check | Result | Detail |');
    expect(md).toContain(`| ${A} | key-fingerprint | ok |`);
    expect(md).toContain('| Transaction | Flag | Detail |');
    expect(md).toContain('| Block | Time | Wallet | Direction | Amount | Counterparty | Transaction | Flags |');
    expect(md).toContain('The last 20 requested, 20 examined, newest first.');

    const section = md.slice(md.indexOf('## Audited transactions'), md.indexOf('## Next steps'));
    const rows = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| Block') && !l.startsWith('| ---'));
    expect(rows).toHaveLength(20);
    // Every row keeps 8 cells: the pipe in the tampered counterparty is escaped.
    for (const row of rows) expect(row.split(/(?<!\\)\|/).length - 2).toBe(8);
    expect(rows[0]).toContain('evil\\|cp # injected \\<b\\>');
    expect(md).toContain('1. keep trading halted (epoch 7)');
  });

  it('serialises to JSON that round-trips', async () => {
    const { report } = await anomalousReport();
    expect(report.halt).toEqual({ halted: true, epoch: 7, reason: 'hot wallet key leaked', actor: 'alice' });
    const json = recoveryReportJson(report);
    expect(json.schema).toBe(RECOVERY_REPORT_SCHEMA);
    expect(json.schema).toBe('drkit.wallet-recovery/1');
    expect(json.generatedAt).toBe(report.generatedAt.toISOString());
    expect(json.audit.transactions[0]?.at).toBe(report.audit.transactions[0]?.at.toISOString());

    const text = JSON.stringify(json);
    const parsed: unknown = JSON.parse(text);
    expect(parsed).toEqual(json);
    const back = recoveryReportFromJson(parsed);
    expect(back).toEqual(report);
    expect(JSON.stringify(recoveryReportJson(back))).toBe(text);

    const broken = JSON.parse(text) as { audit: { transactions: { at: string }[] } };
    (broken.audit.transactions[3] as { at: string }).at = 'yesterday';
    expect(await refusal(() => recoveryReportFromJson(broken))).toMatchObject({
      code: 'HALT_INVALID_INPUT',
      message: expect.stringContaining('$.audit.transactions[3].at'),
    });
    expect(await refusal(() => recoveryReportFromJson({ ...json, schema: 'drkit.wallet-recovery/2' }))).toMatchObject({
      code: 'HALT_INVALID_INPUT',
    });
  });

  it('records each step in the audit log, with the actor and the halt epoch', async () => {
    const { report, schema } = await anomalousReport();
    const events = await eventsOf(schema);
    // Newest first.
    expect(events.map((e) => e.action)).toEqual(['wallet-report', 'wallet-audit', 'wallet-integrity']);
    expect(events.every((e) => e.actor === 'carol')).toBe(true);
    const [done, audit, integrity] = events;
    expect(done).toMatchObject({
      epoch: 7,
      reason: 'conclusion: anomalies-found',
      detail: { conclusion: 'anomalies-found', examined: 20, anomalies: 1 },
    });
    expect(done?.detail.nextSteps).toEqual(report.nextSteps);
    expect(audit).toMatchObject({ detail: { ok: false, last: 20, examined: 20, anomalies: 1 } });
    expect(integrity).toMatchObject({ reason: 'integrity verified for 2 wallet(s)', detail: { ok: true, wallets: 2, failed: [] } });
  });
});

describe('input checks', () => {
  it('refuses a `last` outside 1..10000, before recording anything', async () => {
    const { schema } = await cleanLedger('last');
    const wallet = recovery(schema);
    for (const last of [0, -1, 1.5, 10_001, Number.NaN, Number.POSITIVE_INFINITY, '100' as unknown as number]) {
      const error = await refusal(wallet.auditTransactions({ last }));
      expect(isHaltError(error, 'HALT_INVALID_INPUT'), String(last)).toBe(true);
      expect(isHaltError(await refusal(wallet.recoveryReport({ last })), 'HALT_INVALID_INPUT')).toBe(true);
    }
    expect(await eventsOf(schema)).toEqual([]);
    expect((await wallet.auditTransactions({ last: 10_000 })).examined).toBe(150);
    expect((await wallet.auditTransactions({ last: 1 })).examined).toBe(1);
  });

  it('validates schema names and options before any query', async () => {
    for (const schema of ['Bad', 'x; DROP TABLE y', '1abc', 'a-b', '"q"', 'a'.repeat(64)]) {
      expect(isHaltError(await refusal(migrateLedger(pool, { schema })), 'HALT_INVALID_INPUT'), schema).toBe(true);
      expect(isHaltError(await refusal(() => createLedgerWallet({ db: pool, schema })), 'HALT_INVALID_INPUT'), schema).toBe(true);
    }
    for (const largeAmount of ['1e5', '-1', '0', '1.', ' 10', '0.00']) {
      expect(isHaltError(await refusal(() => createLedgerWallet({ db: pool, largeAmount })), 'HALT_INVALID_INPUT'), largeAmount).toBe(true);
    }
    expect(isHaltError(await refusal(() => createLedgerWallet({ db: pool, burst: { count: 1, blocks: 1 } })), 'HALT_INVALID_INPUT')).toBe(
      true,
    );
    expect(isHaltError(await refusal(() => createLedgerWallet({ db: pool, actor: ' ' })), 'HALT_INVALID_INPUT')).toBe(true);
  });

  it('migrates idempotently, also concurrently', async () => {
    await Promise.all([migrateLedger(pool, { schema: 'wallet_twice' }), migrateLedger(pool, { schema: 'wallet_twice' })]);
    await migrateLedger(pool, { schema: 'wallet_twice' });
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'wallet_twice'`,
    );
    expect(rows[0]?.n).toBe(2);
  });

  it('appends atomically: an overdraft, an unknown wallet or a duplicate hash appends nothing', async () => {
    const { schema, entries } = await cleanLedger('append');
    const count = async () => (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.ledger`)).rows[0]?.n;
    const ok = { wallet: A, counterparty: 'cp-exchange', direction: 'in' as const, amount: '1', block: 3000, at: new Date(START) };
    const cases: LedgerEntryInput[][] = [
      [ok, { ...ok, direction: 'out', amount: '99999999' }],
      [ok, { ...ok, wallet: 'wallet-z' }],
      [ok, { ...ok, hash: entryAt(entries, 0).hash }],
      [ok, { ...ok, amount: '0' }],
      [ok, { ...ok, block: -1 }],
    ];
    for (const batch of cases) {
      const error = await refusal(appendLedgerEntries(pool, batch, { schema }));
      expect(isHaltError(error, 'HALT_INVALID_INPUT'), JSON.stringify(batch[1])).toBe(true);
    }
    expect(await count()).toBe(150);
    expect((await recovery(schema).verifyWalletIntegrity()).ok).toBe(true);
  });

  it('stops when the signal is aborted', async () => {
    const { schema } = await cleanLedger('abort');
    const signal = AbortSignal.abort();
    await expect(recovery(schema).verifyWalletIntegrity({ signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(recovery(schema).auditTransactions({ last: 5, signal })).rejects.toMatchObject({ name: 'AbortError' });
  });
});
