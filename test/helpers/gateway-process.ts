// A real gateway process (`sluice start`) for crash tests: started against a
// buffer and a config directory, killed with SIGKILL while the receiver holds
// one of its requests, and read afterwards (capture replays it logged).
import path from 'node:path';
import { runFixture, type Child } from './child.js';
import { sleep, type Delivery, type Receiver } from './receiver.js';

export interface Gateway {
  child: Child;
  startedAt: number;
  /** Its HTTP address, from its log. */
  api: string;
  /** Deliveries the receiver had seen when it started (all from earlier processes). */
  deliveredBefore: number;
}

/** `sluice start --config <dir>/sluice.yaml`, once it has said it started; added to `children` (for afterAll). */
export async function startGateway(url: string, dir: string, receiver: Receiver, children: Set<Child>): Promise<Gateway> {
  const startedAt = Date.now();
  const deliveredBefore = receiver.deliveries.length;
  const child = runFixture('src/cli/main.ts', { DATABASE_URL: url, SLUICE_DATA_DIR: dir }, { args: ['start', '--config', path.join(dir, 'sluice.yaml')] });
  children.add(child);
  const line = await child.waitFor(/"msg":"http listening"/, 60_000);
  await child.waitFor(/"msg":"sluice started"/, 60_000);
  return { child, startedAt, api: JSON.parse(line).address, deliveredBefore };
}

/**
 * Kills the gateway with SIGKILL once the receiver holds at least one of its
 * requests (checked and signalled in one synchronous step, so the receiver
 * cannot answer in between); returns those requests and when it was killed.
 */
export async function killDuringDelivery(g: Gateway, receiver: Receiver, label: string): Promise<{ at: number; open: Delivery[] }> {
  const until = Date.now() + 20_000;
  let open: Delivery[] = [];
  while (!(open = receiver.deliveries.slice(g.deliveredBefore).filter((d) => d.status === 0)).length) {
    if (Date.now() > until) throw new Error(`${label}: no delivery in flight within 20 s`);
    await sleep(1);
  }
  g.child.proc.kill('SIGKILL');
  const at = Date.now();
  await g.child.kill9();
  return { at, open };
}

/** The capture replays the gateways logged at startup: where the removed tail began, and how many deliveries came before that start. */
export function captureReplays(gateways: Gateway[]): Array<{ from: bigint; deliveredBefore: number }> {
  return gateways.flatMap((g) =>
    g.child.output
      .filter((l) => l.includes('removed a partly stored transaction'))
      .map((l) => ({ from: BigInt(JSON.parse(l).from), deliveredBefore: g.deliveredBefore })),
  );
}

/** Problems counted by kind (numbers and ids blanked), for a readable failure. */
export function problemKinds(problems: string[]): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const p of problems) {
    const kind = p.replace(/msg_\w+/g, 'msg_…').replace(/'[^']*'/g, "'…'").replace(/\d+/g, '#');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}
