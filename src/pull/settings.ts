// A pull consumer's delivery settings, with the defaults Sequin documents.
import type { ConsumerRecord } from '../buffer/consumers.js';

export const PULL_DEFAULTS = {
  ack_wait_ms: 30_000,
  max_ack_pending: 10_000,
  max_waiting: 20,
} as const;

export interface EffectivePullSettings {
  ackWaitMs: number;
  maxAckPending: number;
  maxWaiting: number;
  maxDeliver?: number;
  deadLetterBlocksGroup: boolean;
}

export function pullSettings(c: ConsumerRecord): EffectivePullSettings {
  const p = c.config?.pull;
  return {
    ackWaitMs: p?.ack_wait_ms ?? PULL_DEFAULTS.ack_wait_ms,
    maxAckPending: p?.max_ack_pending ?? PULL_DEFAULTS.max_ack_pending,
    maxWaiting: p?.max_waiting ?? PULL_DEFAULTS.max_waiting,
    maxDeliver: p?.max_deliver ?? undefined,
    deadLetterBlocksGroup: c.config?.dead_letter_blocks_group === true,
  };
}
