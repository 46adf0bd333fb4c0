// The compiled transform of each consumer in this process, shared by pull and
// push. A function transform holds a worker thread, so a consumer keeps one
// compiled transform, replaced (and the old one closed) when its spec changes,
// and closeTransforms() frees them all when the gateway stops.
import { compileTransform, type Transform, type TransformSpec } from '../pipeline/transform/compile.js';

const compiled = new Map<string, { key: string; transform: Transform }>();

/** The consumer's compiled transform for this spec (compiled on first use; its spec was checked when saved). */
export function transformFor(consumerId: string, spec: TransformSpec): Transform {
  const key = JSON.stringify(spec);
  const held = compiled.get(consumerId);
  if (held?.key === key) return held.transform;
  // A batch still running on the old transform gets "the transform was
  // closed", a fault: its messages are retried with the new one.
  if (held) void held.transform.close();
  const transform = compileTransform(spec);
  compiled.set(consumerId, { key, transform });
  return transform;
}

/** Closes the transforms of consumers not in `keep` (deleted, or their transform removed). */
export async function retainTransforms(keep: ReadonlySet<string>): Promise<void> {
  const gone = [...compiled].filter(([id]) => !keep.has(id));
  for (const [id] of gone) compiled.delete(id);
  await Promise.all(gone.map(([, held]) => held.transform.close()));
}

/** Closes every transform (gateway shutdown). */
export async function closeTransforms(): Promise<void> {
  await retainTransforms(new Set());
}
