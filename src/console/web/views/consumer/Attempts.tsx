// A webhook consumer's attempt log, newest first: status, duration, the
// response body's first 4 KiB; filterable by outcome or HTTP status. The
// newest page refreshes every few seconds; older pages load on demand.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiFailure } from '../../api';
import { when } from '../../format';
import { usePoll } from '../../poll';
import type { Attempt } from '../../types';
import { Loading } from '../../ui/bits';
import { Problem } from '../../ui/Field';

interface Page {
  data: Attempt[];
  next_cursor: string | null;
  health: { consecutive_failures: number; last_error: string | null; last_success_at: string | null };
}

export function AttemptsTab({ path }: { path: string }) {
  const [status, setStatus] = useState('');
  const [httpStatus, setHttpStatus] = useState('');
  const query = new URLSearchParams({ limit: '50' });
  if (status) query.set('status', status);
  if (/^\d{3}$/.test(httpStatus)) query.set('http_status', httpStatus);
  const qs = query.toString();
  const { data, error } = usePoll(() => api<Page>('GET', `${path}/attempts?${qs}`), [path, qs]);
  // Older pages, by cursor (an attempt id): they do not move as new attempts arrive.
  const [older, setOlder] = useState<Attempt[]>([]);
  const [cursor, setCursor] = useState<string | null | undefined>(undefined);
  const [olderProblem, setOlderProblem] = useState<string | undefined>();
  useEffect(() => {
    setOlder([]);
    setCursor(undefined);
  }, [path, qs]);
  const next = cursor === undefined ? data?.next_cursor : cursor;
  const loadOlder = async () => {
    if (!next) return;
    setOlderProblem(undefined);
    try {
      const q = new URLSearchParams(qs);
      q.set('cursor', next);
      const page = await api<Page>('GET', `${path}/attempts?${q}`);
      setOlder((o) => [...o, ...page.data]);
      setCursor(page.next_cursor);
    } catch (err) {
      setOlderProblem(err instanceof ApiFailure ? err.summary : String(err));
    }
  };
  const newest = new Set((data?.data ?? []).map((a) => a.id));
  const rows = [...(data?.data ?? []), ...older.filter((a) => !newest.has(a.id))];
  return (
    <>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter attempts">
        <label>
          Outcome{' '}
          <select value={status} onChange={(e) => setStatus((e.currentTarget as HTMLSelectElement).value)}>
            <option value="">all</option>
            <option value="succeeded">succeeded (2xx)</option>
            <option value="failed">failed</option>
          </select>
        </label>
        <label>
          HTTP status{' '}
          <input inputMode="numeric" size={4} value={httpStatus} placeholder="500" onInput={(e) => setHttpStatus((e.currentTarget as HTMLInputElement).value)} />
        </label>
      </form>
      {!data ? (
        error ? <Problem summary={error.summary} /> : <Loading what="attempts" />
      ) : (
        <>
          {error ? <Problem summary={error.summary} /> : null}
          <p>
            Endpoint: {data.health.consecutive_failures ? `${data.health.consecutive_failures} failures in a row` : 'healthy'}
            {data.health.last_error ? ` (last error: ${data.health.last_error})` : ''}; last success {when(data.health.last_success_at)}.
          </p>
          {rows.length === 0 ? (
            <p>No attempts{qs.includes('status') ? ' match' : ' yet'}.</p>
          ) : (
            <table class="attempts">
              <thead>
                <tr>
                  <th scope="col">Started</th>
                  <th scope="col">Status</th>
                  <th scope="col">Outcome</th>
                  <th scope="col" class="num">Duration</th>
                  <th scope="col" class="num">Messages</th>
                  <th scope="col">Attempt</th>
                  <th scope="col">Response</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((a) => (
                  <tr key={a.id} class={a.outcome === 'delivered' ? 'ok' : 'failed'}>
                    <td>{when(a.started_at)}</td>
                    <td>{a.status ?? 'no response'}</td>
                    <td>{a.outcome.replace('_', ' ')}</td>
                    <td class="num">{a.duration_ms} ms</td>
                    <td class="num">{a.message_count}</td>
                    <td>
                      #{a.attempt} <code title="webhook-id">{a.webhook_id}</code>
                    </td>
                    <td>
                      {a.error ? <span class="error-text">{a.error} </span> : null}
                      {a.response_excerpt ? (
                        <details>
                          <summary>body</summary>
                          <pre class="json">{a.response_excerpt}</pre>
                        </details>
                      ) : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {next ? (
            <button type="button" onClick={loadOlder}>
              Load older attempts
            </button>
          ) : null}
          <Problem summary={olderProblem} />
        </>
      )}
    </>
  );
}
