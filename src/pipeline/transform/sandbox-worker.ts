// The gateway's handle on one function transform's worker thread (worker.mjs,
// which owns the QuickJS runtime). One worker per transform: a function that
// loops until its time limit holds up only its own consumer's batches.
//
// The worker is started on the first batch, kept unref'd while idle (an idle
// transform never keeps the process alive) and replaced when it dies. Deaths
// are expected to be rare (the sandbox catches errors, time-outs and memory
// exhaustion itself), so a worker that keeps dying is a fault: after
// RESTARTS.max starts in RESTARTS.windowMs, batches fail at once until the
// window has passed rather than spinning up threads in a loop.
import { Worker } from 'node:worker_threads';
import type { TransformResult } from './compile.js';

export interface SandboxOptions {
  source: string;
  timeoutMs: number;
  memoryMb: number;
}

const WORKER_URL = new URL('./worker.mjs', import.meta.url);
const RESTARTS = { max: 5, windowMs: 60_000 };
// The last resort if the interrupt never comes (a native call QuickJS cannot
// interrupt): a batch may take its messages' limits plus this, then the
// thread is terminated. Covers the worker's start (loading the WebAssembly).
const WATCHDOG_GRACE_MS = 5_000;
// The worker's own JavaScript heap holds a batch's text in and out: up to
// 100 outputs of at most 1 MiB each (the sandbox refuses a bigger one), and
// the input; QuickJS's heap is WebAssembly memory, bounded by memory_mb.
const WORKER_HEAP_MB = 256;

interface Pending {
  count: number;
  resolve: (lines: string) => void;
  fail: (reason: string) => void;
}

export class SandboxWorker {
  private worker: Worker | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private readonly starts: number[] = [];
  private watchdog: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: SandboxOptions) {}

  /** The messages' results, in order; a failure of the thread fails each message with its reason. `served`: see Transform.apply. */
  async run(messages: string[], served = ''): Promise<TransformResult[]> {
    if (messages.length === 0) return [];
    if (this.closed) return messages.map(() => ({ ok: false, error: 'the transform was closed', fault: true }));
    const worker = this.ensureWorker();
    if (typeof worker === 'string') return messages.map(() => ({ ok: false, error: worker, fault: true }));
    // A raw newline in JSON text can only be whitespace, so a space does the same and keeps one message a line.
    const batch = messages.map((m) => (m.includes('\n') ? m.replaceAll('\n', ' ') : m)).join('\n');
    const id = this.nextId++;
    const lines = await new Promise<string | Error>((resolve) => {
      this.pending.set(id, { count: messages.length, resolve, fail: (reason) => resolve(new Error(reason)) });
      if (this.pending.size === 1) {
        worker.ref();
        this.armWatchdog();
      }
      worker.postMessage({ id, batch, count: messages.length, served });
    });
    if (lines instanceof Error) return messages.map(() => ({ ok: false, error: lines.message, fault: true }));
    return decode(lines, messages.length);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.stop('the transform was closed');
  }

  private ensureWorker(): Worker | string {
    if (this.worker) return this.worker;
    const now = Date.now();
    while (this.starts.length > 0 && now - this.starts[0] > RESTARTS.windowMs) this.starts.shift();
    if (this.starts.length >= RESTARTS.max) {
      return `the transform's sandbox failed ${RESTARTS.max} times within ${RESTARTS.windowMs / 1000} s; it is retried after a pause`;
    }
    this.starts.push(now);
    // execArgv: [] because the worker is plain JavaScript: it needs neither
    // tsx's loader (inherited by default under `tsx`) nor the parent's flags.
    const worker = new Worker(WORKER_URL, {
      workerData: this.options,
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
    });
    worker.unref();
    worker.on('message', (reply: { id: number; lines: string }) => this.settle(reply));
    worker.on('error', (error) => void this.lost(worker, `the transform's sandbox stopped: ${error.message}`));
    worker.on('exit', (code) => void this.lost(worker, `the transform's sandbox exited (code ${code})`));
    this.worker = worker;
    return worker;
  }

  private settle({ id, lines }: { id: number; lines: string }): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    entry.resolve(lines);
    this.armWatchdog();
    if (this.pending.size === 0) this.worker?.unref();
  }

  /** The head of the queue is the batch the worker is on: it gets its messages' limits plus the grace. */
  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
    const head = this.pending.values().next().value;
    if (!head) return;
    const ms = head.count * this.options.timeoutMs + WATCHDOG_GRACE_MS;
    this.watchdog = setTimeout(() => void this.stop(`the transform's sandbox did not answer within ${ms} ms and was restarted`), ms);
    this.watchdog.unref();
  }

  private async lost(worker: Worker, reason: string): Promise<void> {
    if (this.worker === worker) await this.stop(reason);
  }

  /** Ends the current worker (if any) and fails every batch it held. */
  private async stop(reason: string): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
    const held = [...this.pending.values()];
    this.pending.clear();
    for (const entry of held) entry.fail(reason);
    if (worker) await worker.terminate();
  }
}

/** One result a line: `+<json>` or `!<json string of the reason>`. */
function decode(text: string, count: number): TransformResult[] {
  const lines = text.split('\n');
  if (lines.length !== count) {
    return Array.from({ length: count }, (): TransformResult => ({ ok: false, error: "the transform's sandbox returned a malformed reply", fault: true }));
  }
  return lines.map((line): TransformResult => {
    if (line.charCodeAt(0) === 43 /* + */) return { ok: true, json: line.slice(1) };
    try {
      return { ok: false, error: String(JSON.parse(line.slice(1))) };
    } catch {
      return { ok: false, error: "the transform's sandbox returned a malformed reply", fault: true };
    }
  });
}
