import { describe, expect, it } from 'vitest';
import {
  DEFAULT_PRODUCT,
  formatDuration,
  type IncidentInfo,
  renderApproval,
  renderFailure,
  renderInitial,
  renderOverrun,
  renderResolution,
  renderUpdate,
} from '../../src/notify/templates.js';

const START = Date.UTC(2026, 0, 1, 9, 0, 0);
const MIN = 60_000;

function incident(overrides: Partial<IncidentInfo> = {}): IncidentInfo {
  return {
    product: 'Acme',
    severity: 'sev1',
    category: 3,
    title: 'Database corruption recovery',
    environment: 'production',
    runId: 'run-20260101-0900-abcd',
    impact: 'Checkout unavailable for all users',
    status: 'Investigating',
    startedAt: START,
    now: START,
    ...overrides,
  };
}

describe('formatDuration', () => {
  it.each([
    [0, '0 seconds'],
    [-5000, '0 seconds'],
    [Number.NaN, '0 seconds'],
    [1000, '1 second'],
    [45_000, '45 seconds'],
    [59_999, '59 seconds'],
    [60_000, '1 minute'],
    [12 * MIN + 30_000, '12 minutes'],
    [59 * MIN + 59_000, '59 minutes'],
    [60 * MIN, '1 hour'],
    [65 * MIN, '1 hour 5 minutes'],
    [61 * MIN, '1 hour 1 minute'],
    [2 * 60 * MIN, '2 hours'],
    [26 * 60 * MIN + 3 * MIN, '26 hours 3 minutes'],
  ])('%d ms is "%s"', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe('renderInitial', () => {
  it('renders the initial alert of the plans exactly, then the run context', () => {
    const n = renderInitial(incident());
    expect(n.kind).toBe('initial');
    expect(n.title).toBe('🚨 ACME INCIDENT - Sev1 - Critical');
    expect(n.text.split('\n').slice(0, 7).join('\n')).toBe(
      [
        '🚨 ACME INCIDENT - Sev1 - Critical',
        '',
        'Impact: Checkout unavailable for all users',
        'Status: Investigating',
        'ETA: Unknown',
        '',
        'Updates will follow every 15 minutes.',
      ].join('\n'),
    );
    expect(n.text).toContain('Runbook: Database corruption recovery · Environment: production · Run: run-20260101-0900-abcd');
    expect(n.text).toContain('Category: 3 - Data Loss/Corruption');
    expect(n.text).toContain('Escalation: CTO, CEO (respond immediately, 24/7)');
    expect(n).toMatchObject({
      severity: 'sev1',
      runId: 'run-20260101-0900-abcd',
      runbook: 'Database corruption recovery',
      environment: 'production',
      time: START,
    });
    expect(n.fields).toMatchObject({
      severity: 'Sev1 - Critical',
      impact: 'Checkout unavailable for all users',
      status: 'Investigating',
      eta: 'Unknown',
    });
  });

  it('uses the ETA when known, the configured product and the severity label', () => {
    const n = renderInitial(incident({ product: DEFAULT_PRODUCT, severity: 'sev2', category: undefined, eta: '30 minutes' }));
    expect(n.title).toBe('🚨 SERVICE INCIDENT - Sev2 - High');
    expect(n.text).toContain('\nETA: 30 minutes\n');
    expect(n.text).not.toContain('Category:');
    expect(n.text).toContain('Escalation: Engineering Lead (respond within 1 hour)');
    expect(Object.values(n.fields)).not.toContain('undefined');
  });

  it('never hard-codes a product name', () => {
    expect(renderInitial(incident({ product: 'Widgets' })).text).not.toMatch(/ACME/);
    expect(renderInitial(incident({ product: '  ' })).title).toBe('🚨 SERVICE INCIDENT - Sev1 - Critical');
  });
});

describe('renderResolution', () => {
  it('renders the resolution of the plans exactly', () => {
    const n = renderResolution(incident({ now: START + 65 * MIN, rootCause: 'Disk full on db-1' }));
    expect(n.kind).toBe('resolution');
    expect(n.title).toBe('✅ ACME INCIDENT RESOLVED');
    expect(n.text.split('\n').slice(0, 7).join('\n')).toBe(
      [
        '✅ ACME INCIDENT RESOLVED',
        '',
        'Duration: 1 hour 5 minutes',
        'Impact: Checkout unavailable for all users',
        'Root Cause: Disk full on db-1',
        '',
        'Post-mortem to follow within 48 hours.',
      ].join('\n'),
    );
    expect(n.fields).toMatchObject({ duration: '1 hour 5 minutes', rootCause: 'Disk full on db-1' });
  });

  it('says "Under investigation" without a root cause', () => {
    expect(renderResolution(incident({ now: START + 12 * MIN })).text).toContain(
      'Duration: 12 minutes\nImpact: Checkout unavailable for all users\nRoot Cause: Under investigation\n',
    );
  });
});

describe('renderUpdate', () => {
  it('says how long, where the run is and when the next update comes', () => {
    const n = renderUpdate(
      incident({
        now: START + 30 * MIN,
        status: 'Restoring',
        phase: 'restore',
        step: 'Restore the database',
        completedSteps: 3,
        totalSteps: 7,
      }),
    );
    expect(n.kind).toBe('update');
    expect(n.title).toBe('🔄 ACME INCIDENT UPDATE - Sev1 - Critical');
    expect(n.text).toContain('Elapsed: 30 minutes\n');
    expect(n.text).toContain('Status: Restoring\nPhase: restore\nStep: Restore the database\nProgress: 3/7 steps\nETA: Unknown\n');
    expect(n.text).toContain('\nNext update in 15 minutes.\n');
    expect(n.fields).toMatchObject({ elapsed: '30 minutes', progress: '3/7 steps', phase: 'restore' });
  });

  it('leaves out what is not known and follows a configured cadence', () => {
    const n = renderUpdate(incident({ now: START + 10 * MIN, updateEveryMs: 5 * MIN }));
    expect(n.text).not.toContain('Phase:');
    expect(n.text).not.toContain('Progress:');
    expect(n.text).toContain('Next update in 5 minutes.');
  });
});

describe('renderFailure', () => {
  it('names the step, the error and what to do next', () => {
    const n = renderFailure(
      incident({
        now: START + 20 * MIN,
        step: 'Restore the database',
        completedSteps: 2,
        totalSteps: 5,
        outcome: 'failed',
        detail: 'pg_restore exited 1',
      }),
    );
    expect(n.kind).toBe('failure');
    expect(n.title).toBe('❌ ACME RECOVERY FAILED - Sev1 - Critical');
    expect(n.text).toContain('Failed step: Restore the database\n');
    expect(n.text).toContain('Error: pg_restore exited 1\n');
    expect(n.text).toContain('Status: The incident is NOT resolved.');
    expect(n.text).toMatch(
      /Next: Take over manually: .* run run-20260101-0900-abcd.* Escalate: On-call engineer → Tech lead → Management\./,
    );
    expect(n.fields).toMatchObject({
      outcome: 'failed',
      step: 'Restore the database',
      error: 'pg_restore exited 1',
      progress: '2/5 steps',
    });
  });

  it('says when the run was aborted, and takes the error and advice given', () => {
    const n = renderFailure(incident({ severity: 'sev3', category: 1, outcome: 'aborted', step: 'Promote replica' }), {
      error: 'Ctrl-C',
      next: 'Call the DBA.',
    });
    expect(n.title).toBe('⛔ ACME RECOVERY ABORTED - Sev3 - Medium');
    expect(n.text).toContain('Stopped at: Promote replica\n');
    expect(n.text).toContain('Error: Ctrl-C\n');
    expect(n.text).toContain('Next: Call the DBA.');
  });
});

describe('renderOverrun', () => {
  it('names the phase, its budget and the time spent so far', () => {
    const n = renderOverrun(incident({ now: START + 50 * MIN, severity: 'sev2', category: 2 }), {
      phase: 'restore',
      budgetMs: 30 * MIN,
      elapsedMs: 42 * MIN,
    });
    expect(n.kind).toBe('overrun');
    expect(n.title).toBe('⚠️ ACME RECOVERY OVER BUDGET - Sev2 - High');
    expect(n.text).toContain('Phase: restore\nBudget: 30 minutes\nActual so far: 42 minutes (12 minutes over)\n');
    expect(n.text).toContain('or escalate: On-call engineer → Tech lead.');
    expect(n.fields).toMatchObject({ phase: 'restore', budget: '30 minutes', actual: '42 minutes' });
  });
});

describe('renderApproval', () => {
  it('says which step waits, for what, and how to answer', () => {
    const n = renderApproval(incident({ step: 'Promote replica' }), {
      prompt: 'Promote db-2 to primary?',
      how: 'Run `drkit approve run-20260101-0900-abcd`.',
    });
    expect(n.kind).toBe('approval');
    expect(n.title).toBe('✋ ACME RECOVERY NEEDS APPROVAL - Sev1 - Critical');
    expect(n.text).toContain('Step: Promote replica\nQuestion: Promote db-2 to primary?\n');
    expect(n.text).toContain('The run is paused until someone answers. Run `drkit approve run-20260101-0900-abcd`.');
  });
});
