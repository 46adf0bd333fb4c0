// Types for sandbox.mjs (plain JavaScript, so that the worker thread loads it
// without a TypeScript loader).

export interface Sandbox {
  /** Runs `count` messages (one JSON text a line); one result a line, in order: `+<json>` or `!<json string of the reason>`. */
  run(batch: string, count: number, served?: string): string;
  dispose(): void;
}

export function createSandbox(options: { source: string; timeoutMs: number; memoryMb: number }): Promise<Sandbox>;
