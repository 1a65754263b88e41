import { type RedisSandbox, startRedis } from '@drkit/sandbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHealthCheck, type RedisHealthConfig } from '../../src/health/index.js';

const PASSWORD = 'redis-Secret-77@x';
let redis: RedisSandbox;

beforeAll(async () => {
  redis = await startRedis({ password: PASSWORD });
});
afterAll(async () => {
  await redis?.stop();
});

const check = (config: Omit<RedisHealthConfig, 'type'>, env: Record<string, string> = { REDIS_PASSWORD: PASSWORD }) =>
  createHealthCheck('cache', { type: 'redis', ...config }, { env });
const plainUrl = () => `redis://${redis.host}:${redis.port}/0`;

describe('redis health check', () => {
  it('answers PONG with the password from passwordEnv, which it shows nowhere', async () => {
    const probe = check({ url: plainUrl(), passwordEnv: 'REDIS_PASSWORD' });
    const result = await probe.check();
    expect(result).toMatchObject({ ok: true, detail: 'PONG' });
    expect(probe.describe()).toBe(`redis ${plainUrl()}: PING, expecting PONG`);
  });

  it('takes the password from the URL too, and redacts it in describe()', async () => {
    const probe = check({ url: redis.url() });
    expect((await probe.check()).ok).toBe(true);
    expect(probe.describe()).toBe(`redis redis://:[redacted]@${redis.host}:${redis.port}/0: PING, expecting PONG`);
    expect(probe.describe()).not.toContain(encodeURIComponent(PASSWORD));
  });

  it('fails on a wrong or missing password without showing it', async () => {
    const wrong = await check({ url: plainUrl(), passwordEnv: 'REDIS_PASSWORD' }, { REDIS_PASSWORD: 'wrong-password-9' }).check();
    expect(wrong.ok).toBe(false);
    expect(wrong.detail).toMatch(/WRONGPASS|invalid password/);
    expect(wrong.detail).not.toContain('wrong-password-9');
    const anonymous = await check({ url: plainUrl() }).check();
    expect(anonymous).toMatchObject({ ok: false });
    expect(anonymous.detail).toMatch(/NOAUTH/);
  });

  // Last: it stops the server the other tests use.
  it('a stopped server is ok:false with connection refused', async () => {
    const probe = check({ url: plainUrl(), passwordEnv: 'REDIS_PASSWORD', timeoutMs: 2000 });
    await redis.stop();
    const result = await probe.check();
    expect(result).toMatchObject({ ok: false, detail: 'connection refused (ECONNREFUSED)' });
  });
});
