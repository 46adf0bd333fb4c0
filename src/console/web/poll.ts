// Live figures without reloading: a call repeated every few seconds, the next
// one only after the last answered (a slow gateway is never piled on), and
// paused while the tab is hidden.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiFailure } from './api';

export const POLL_MS = 3000;

export interface Polled<T> {
  data: T | undefined;
  error: ApiFailure | undefined;
  reload: () => void;
}

export function usePoll<T>(load: () => Promise<T>, deps: unknown[], intervalMs = POLL_MS): Polled<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiFailure | undefined>(undefined);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    setData(undefined);
    setError(undefined);
  }, deps);
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      if (stopped) return;
      if (document.hidden) {
        timer = setTimeout(run, intervalMs);
        return;
      }
      try {
        const value = await loadRef.current();
        if (stopped) return;
        setData(value);
        setError(undefined);
      } catch (err) {
        if (stopped) return;
        setError(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
      }
      if (!stopped && intervalMs > 0) timer = setTimeout(run, intervalMs);
    };
    void run();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, reload };
}

/** One call, once (intervalMs 0), with a reload. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Polled<T> {
  return usePoll(load, deps, 0);
}
