// Dead letters, oldest first: retry (pending again, in their original order)
// or discard, the ones ticked or all of them.
import { useState } from 'preact/hooks';
import { api, ApiFailure } from '../../api';
import { when } from '../../format';
import { usePoll } from '../../poll';
import type { DeadLetter } from '../../types';
import { Action, Json, Loading } from '../../ui/bits';
import { Problem } from '../../ui/Field';

export function DeadLettersTab({ path, admin, onChange }: { path: string; admin: boolean; onChange: () => void }) {
  const { data, error, reload } = usePoll(() => api<{ data: DeadLetter[]; next_cursor: string | null }>('GET', `${path}/dead-letters?limit=100`), [path]);
  // Later pages (oldest first, by cursor), loaded on demand; a retry or discard starts over.
  const [more, setMore] = useState<DeadLetter[]>([]);
  const [cursor, setCursor] = useState<string | null | undefined>(undefined);
  const [picked, setPicked] = useState<Set<string>>(new Set());
  const [done, setDone] = useState<string | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  if (!data) return error ? <Problem summary={error.summary} /> : <Loading what="dead letters" />;

  const run = (verb: 'retry' | 'discard', body: { ids: string[] } | { all: true }) => async () => {
    setProblem(undefined);
    try {
      const r = await api<{ retried?: number; discarded?: number }>('POST', `${path}/dead-letters/${verb}`, body);
      setDone(verb === 'retry' ? `${r.retried} retried: pending again.` : `${r.discarded} discarded.`);
      setPicked(new Set());
      setMore([]);
      setCursor(undefined);
      reload();
      onChange();
    } catch (err) {
      setProblem(err instanceof ApiFailure ? err.summary : String(err));
    }
  };
  const toggle = (id: string) => {
    const next = new Set(picked);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setPicked(next);
  };
  const ids = [...picked];
  const next = cursor === undefined ? data.next_cursor : cursor;
  const loadMore = async () => {
    if (!next) return;
    try {
      const page = await api<{ data: DeadLetter[]; next_cursor: string | null }>('GET', `${path}/dead-letters?limit=100&cursor=${encodeURIComponent(next)}`);
      setMore((m) => [...m, ...page.data]);
      setCursor(page.next_cursor);
    } catch (err) {
      setProblem(err instanceof ApiFailure ? err.summary : String(err));
    }
  };
  const first = new Set(data.data.map((d) => d.id));
  const letters = [...data.data, ...more.filter((d) => !first.has(d.id))];
  return (
    <>
      <Problem summary={problem ?? error?.summary} />
      {done ? <p role="status">{done}</p> : null}
      {letters.length === 0 ? (
        <p>No dead letters.</p>
      ) : (
        <>
          {admin ? (
            <div class="actions" role="group" aria-label="Dead letter actions">
              <Action kind="primary" disabled={!ids.length} onRun={run('retry', { ids })}>
                Retry selected ({ids.length})
              </Action>
              <Action disabled={!ids.length} confirm={`Discard ${ids.length} dead letters? They will not be delivered.`} onRun={run('discard', { ids })}>
                Discard selected
              </Action>
              <Action onRun={run('retry', { all: true })}>Retry all</Action>
              <Action kind="danger" confirm="Discard every dead letter of this consumer?" onRun={run('discard', { all: true })}>
                Discard all
              </Action>
            </div>
          ) : null}
          <ul class="dead-letters">
            {letters.map((d) => (
              <li key={d.id}>
                {admin ? (
                  <input type="checkbox" id={`dl-${d.id}`} checked={picked.has(d.id)} onChange={() => toggle(d.id)} />
                ) : null}
                <label for={`dl-${d.id}`}>
                  <code>{d.id}</code> group <code>{d.group_key}</code>, delivered {d.deliver_count}×, last {when(d.last_delivered_at)}
                  {d.last_error ? <span class="error-text"> — {d.last_error}</span> : null}
                </label>
                <details>
                  <summary>message</summary>
                  <Json value={d.message} />
                </details>
              </li>
            ))}
          </ul>
          {next ? (
            <button type="button" onClick={loadMore}>
              Load more dead letters
            </button>
          ) : null}
        </>
      )}
    </>
  );
}
