import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApi, type ApiFixture } from './api-fixture.js';

let f: ApiFixture;
beforeAll(async () => {
  f = await startApi('api_app');
});
afterAll(async () => {
  await f?.stop();
});

describe('health', () => {
  it('/health answers without a token', async () => {
    const r = await f.call('GET', '/health', undefined, null);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok' });
  });
  it('/ready is 200 when the buffer answers and capture runs', async () => {
    f.statuses.splice(0, f.statuses.length, { name: 'main', running: true, slot: 's', lag_bytes: 0, last_error: null });
    const r = await f.call('GET', '/ready', undefined, null);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok' });
  });
});
