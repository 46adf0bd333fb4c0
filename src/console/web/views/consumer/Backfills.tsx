// Backfills of the consumer: progress bars (rows read of the estimate, rate,
// time left), start one (a table or all, from a column's value), cancel.
import { useState } from 'preact/hooks';
import { api, ApiFailure, enc } from '../../api';
import { count, duration } from '../../format';
import { usePoll } from '../../poll';
import type { Backfill } from '../../types';
import { Action, Loading } from '../../ui/bits';
import { errorsFor, Field, OtherErrors, Problem } from '../../ui/Field';

export function BackfillsTab({ path, tables, admin }: { path: string; tables: string[]; admin: boolean }) {
  const { data, error, reload } = usePoll(() => api<{ data: Backfill[] }>('GET', `${path}/backfills`), [path]);
  const [table, setTable] = useState('');
  const [column, setColumn] = useState('');
  const [from, setFrom] = useState('');
  const [failure, setFailure] = useState<ApiFailure | undefined>();

  const start = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    const body: Record<string, unknown> = {};
    if (table) body.table = table;
    if (column || from) body.start = { column, from };
    try {
      await api('POST', `${path}/backfills`, body);
      reload();
    } catch (err) {
      setFailure(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
    }
  };
  const fields = failure?.fields ?? {};
  return (
    <>
      {admin ? (
        <form class="inline-form" onSubmit={start} aria-label="Start a backfill">
          <div class="field">
            <label for="backfill-table">Table</label>
            <select id="backfill-table" value={table} onChange={(e) => setTable((e.currentTarget as HTMLSelectElement).value)}>
              <option value="">each of the consumer's tables</option>
              {tables.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </div>
          <Field label="From column (optional)" name="start.column" value={column} onInput={setColumn} errors={errorsFor(fields, 'start.column')} placeholder="updated_at" />
          <Field label="From value" name="start.from" value={from} onInput={setFrom} errors={errorsFor(fields, 'start.from')} placeholder="2026-11-01T00:00:00Z" />
          <button type="submit" class="primary">
            Start backfill
          </button>
          {failure ? (
            <>
              <Problem summary={failure.summary} />
              <OtherErrors fields={fields} shown={['start']} />
            </>
          ) : null}
        </form>
      ) : null}
      {!data ? (
        error ? <Problem summary={error.summary} /> : <Loading what="backfills" />
      ) : data.data.length === 0 ? (
        <p>No backfills.</p>
      ) : (
        <ul class="backfills">
          {data.data.map((b) => {
            const total = b.rows_estimate ?? 0;
            return (
              <li key={b.id}>
                <strong>{b.table}</strong> — {b.state}: {count(b.rows_read)} rows read
                {total ? ` of about ${count(total)}` : ''}
                {b.rate_per_second ? `, ${count(b.rate_per_second)} rows/s` : ''}
                {b.state === 'running' && b.eta_seconds !== null ? `, ${duration(b.eta_seconds * 1000)} left` : ''}
                <progress max={total || 1} value={b.state === 'done' ? total || 1 : Math.min(b.rows_read, total || b.rows_read)} aria-label={`Backfill of ${b.table}`} />
                {b.error ? <p class="error-text">{b.error}</p> : null}
                {admin && b.state === 'running' ? (
                  <Action confirm={`Cancel the backfill of ${b.table}?`} onRun={() => api('DELETE', `${path}/backfills/${enc(b.id)}`).then(reload)}>
                    Cancel
                  </Action>
                ) : null}
              </li>
            );
          })}
        </ul>
      )}
    </>
  );
}
