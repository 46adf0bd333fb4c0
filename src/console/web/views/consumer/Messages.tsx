// Recent messages routed to the consumer, newest first, as it receives them
// (transform applied): GET …/messages peeks and never delivers.
import { api } from '../../api';
import { when } from '../../format';
import { usePoll } from '../../poll';
import type { Peeked } from '../../types';
import { Json, Loading } from '../../ui/bits';
import { Problem } from '../../ui/Field';

export function MessagesTab({ path }: { path: string }) {
  const { data, error } = usePoll(() => api<{ data: Peeked[] }>('GET', `${path}/messages?limit=20`), [path]);
  if (!data) return error ? <Problem summary={error.summary} /> : <Loading what="messages" />;
  if (!data.data.length) return <p>No retained change is routed to this consumer yet.</p>;
  return (
    <>
      {error ? <Problem summary={error.summary} /> : null}
      <ol class="messages">
        {data.data.map((m) => (
          <li key={`${m.commit_lsn}:${m.commit_idx}`}>
            <details>
              <summary>
                <code>
                  {m.commit_lsn}:{m.commit_idx}
                </code>{' '}
                <span class={`badge status-${m.status}`}>{m.status.replace('_', ' ')}</span> {when(m.committed_at)} {summaryOf(m.message)}
              </summary>
              {m.error ? <p class="error-text">Transform error: {m.error}</p> : <Json value={m.message} />}
            </details>
          </li>
        ))}
      </ol>
    </>
  );
}

function summaryOf(message: unknown): string {
  if (!message || typeof message !== 'object') return '';
  const m = message as { action?: string; metadata?: { table_schema?: string; table_name?: string } };
  if (!m.action || !m.metadata?.table_name) return '';
  return `${m.action} ${m.metadata.table_schema}.${m.metadata.table_name}`;
}
