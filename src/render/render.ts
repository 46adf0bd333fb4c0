// The one step from a stored message to what a consumer is served, used by
// pull receives, webhook batches and the dead-letter listing alike:
//   shape     a change as a row message, for a consumer of message_kind row
//             (row-message.ts);
//   envelope  the payload with metadata.consumer and metadata.database
//             (which depend on who reads it, so are never stored);
//   render    the envelope passed through the consumer's transform, if any.
// A transform runs when a message is served, not when it is captured, so a
// rewind or replay is served with the consumer's current transform.
import { servedMetadataJson, withConsumer, type SourceDatabase } from '../buffer/message.js';
import type { TransformSpec } from '../pipeline/transform/compile.js';
import { toRowPayload } from './row-message.js';
import { transformFor } from './transforms.js';

export type Rendered = { ok: true; text: string } | { ok: false; error: string };

/**
 * The transform's sandbox itself failed (its thread died or is restarting):
 * nothing is known about the messages, so they are retried, not dead-lettered.
 */
export class TransformUnavailable extends Error {
  constructor(reason: string) {
    super(`the consumer's transform is unavailable: ${reason}`);
    this.name = 'TransformUnavailable';
  }
}

export interface RenderConsumer {
  id: string;
  name: string;
  annotations: Record<string, unknown>;
  database?: SourceDatabase | null;
  config: { transform?: TransformSpec; message_kind?: 'change' | 'row' };
}

export interface Renderer {
  /** True when render() runs a transform (otherwise it is envelope() on each). */
  readonly transformed: boolean;
  /** The message as captured (or its row message), as this consumer is served it without a transform. */
  envelope(payload: string): string;
  /**
   * What is sent for each stored payload, in order. A message the transform
   * refuses (threw, timed out, returned no JSON value) gets its reason, to be
   * dead-lettered. Throws TransformUnavailable when the sandbox is down.
   */
  render(payloads: readonly string[]): Promise<Rendered[]>;
}

// Per consumer record: a reload makes new records, so annotations and the
// source's metadata are never stale.
const renderers = new WeakMap<RenderConsumer, Renderer>();

export function rendererFor(c: RenderConsumer): Renderer {
  let r = renderers.get(c);
  if (!r) renderers.set(c, (r = makeRenderer(c)));
  return r;
}

function makeRenderer(c: RenderConsumer): Renderer {
  const served = servedMetadataJson(c);
  const rows = c.config.message_kind === 'row';
  const shape = rows ? toRowPayload : (payload: string) => payload;
  const envelope = (payload: string) => withConsumer(shape(payload), served);
  const spec = c.config.transform;
  if (!spec) {
    return {
      transformed: false,
      envelope,
      render: async (payloads) => payloads.map((p): Rendered => ({ ok: true, text: envelope(p) })),
    };
  }
  return {
    transformed: true,
    envelope,
    async render(payloads) {
      if (payloads.length === 0) return [];
      // Looked up per call: a changed spec replaces the compiled transform.
      // Stored payloads and the served metadata apart: a function's sandbox
      // parses the metadata once a batch rather than in every message.
      // A row consumer's transform is given the row message.
      const input = rows ? payloads.map(toRowPayload) : (payloads as string[]);
      const results = await transformFor(c.id, spec).apply(input, served);
      return results.map((r): Rendered => {
        if (r.ok) return { ok: true, text: r.json };
        if (r.fault) throw new TransformUnavailable(r.error);
        return { ok: false, error: `transform: ${r.error}` };
      });
    },
  };
}
