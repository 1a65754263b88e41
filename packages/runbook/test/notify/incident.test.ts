import { describe, expect, it } from 'vitest';
import { CATEGORIES, ESCALATION_PATH, escalationFor, SEVERITIES, UPDATE_EVERY_MS, worseSeverity } from '../../src/notify/incident.js';

describe('the classification tables', () => {
  it('hold the plans severity levels', () => {
    expect(SEVERITIES.sev1).toMatchObject({ label: 'Sev1 - Critical', title: 'Critical', responseTimeMs: 0, escalation: ['CTO', 'CEO'] });
    expect(SEVERITIES.sev2).toMatchObject({ label: 'Sev2 - High', responseTimeMs: 60 * 60_000, escalation: ['Engineering Lead'] });
    expect(SEVERITIES.sev3).toMatchObject({ label: 'Sev3 - Medium', responseTimeMs: 4 * 60 * 60_000, escalation: ['On-call engineer'] });
    expect(SEVERITIES.sev2.examples).toContain('Service degradation affecting >50% users');
  });

  it('hold the plans disaster categories and cadence', () => {
    expect(CATEGORIES[1]).toMatchObject({ title: 'Service Degradation', responseTimeMs: 15 * 60_000, severityRange: 'Low to Medium' });
    expect(CATEGORIES[2]).toMatchObject({ title: 'Service Outage', responseTimeMs: 0, severityRange: 'High' });
    expect(CATEGORIES[3]).toMatchObject({ title: 'Data Loss/Corruption', responseTimeMs: 0, severityRange: 'Critical' });
    expect(CATEGORIES[4]).toMatchObject({ title: 'Security Breach', responseTimeMs: 0, severityRange: 'Critical' });
    expect(ESCALATION_PATH).toEqual(['On-call engineer', 'Tech lead', 'Management']);
    expect(UPDATE_EVERY_MS).toBe(15 * 60_000);
  });
});

describe('escalationFor', () => {
  it('goes up the path with the severity', () => {
    expect(escalationFor('sev3')).toEqual({
      severity: 'sev3',
      respondWithinMs: 4 * 60 * 60_000,
      path: ['On-call engineer'],
      involve: ['On-call engineer'],
    });
    expect(escalationFor('sev2').path).toEqual(['On-call engineer', 'Tech lead']);
    expect(escalationFor('sev1')).toEqual({ severity: 'sev1', respondWithinMs: 0, path: [...ESCALATION_PATH], involve: ['CTO', 'CEO'] });
  });

  it('lets a category raise the severity and shorten the response time, never lower them', () => {
    expect(escalationFor('sev3', 4)).toMatchObject({ severity: 'sev1', respondWithinMs: 0, involve: ['CTO', 'CEO'] });
    expect(escalationFor('sev3', 1)).toMatchObject({ severity: 'sev3', respondWithinMs: 15 * 60_000 });
    expect(escalationFor('sev1', 1)).toMatchObject({ severity: 'sev1', respondWithinMs: 0 });
    expect(escalationFor('sev3', 2)).toMatchObject({ severity: 'sev2', respondWithinMs: 0 });
  });

  it('compares severities', () => {
    expect(worseSeverity('sev2', 'sev1')).toBe('sev1');
    expect(worseSeverity('sev2', 'sev3')).toBe('sev2');
  });
});
