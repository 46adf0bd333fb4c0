// Sources: the list with capture status; adding one (a connection test
// first, answered with the problems the API finds); one source's settings,
// retained log and tables with their replica identity.
import { useState } from 'preact/hooks';
import { api, ApiFailure, enc } from '../api';
import { bytes, count, when } from '../format';
import { useLoad, usePoll } from '../poll';
import { href, navigate } from '../router';
import type { Source, SourceTable } from '../types';
import { Json, Loading, StateBadge } from '../ui/bits';
import { errorsFor, Field, OtherErrors, Problem } from '../ui/Field';

interface Check {
  ok: boolean;
  connected: boolean;
  server_version?: string;
  wal_level?: string;
  problems: string[];
}

// As this gateway process sees its capture; `unknown` when it captures nothing (another process may).
const stateOf = (s: Source) => (!s.status ? 'unknown' : s.status.running ? 'running' : s.status.standing_by ? 'standing_by' : s.status.last_error ? 'failing' : 'starting');

export function SourcesView() {
  const { data, error } = usePoll(() => api<{ data: Source[] }>('GET', '/sources'), []);
  return (
    <>
      <h1>Sources</h1>
      {!data ? (
        error ? <Problem summary={error.summary} /> : <Loading what="sources" />
      ) : data.data.length === 0 ? (
        <p>No sources yet.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Source</th>
              <th scope="col">Database</th>
              <th scope="col">Capture</th>
              <th scope="col">Slot lag</th>
              <th scope="col">Retained</th>
            </tr>
          </thead>
          <tbody>
            {data.data.map((s) => (
              <tr key={s.name}>
                <th scope="row">
                  <a href={href('sources', s.name)}>{s.name}</a>
                </th>
                <td>
                  <code>{s.url ?? 'the buffer database'}</code>
                </td>
                <td>
                  <StateBadge state={stateOf(s)} />
                  {s.status?.last_error ? <p class="error-text">{s.status.last_error}</p> : null}
                </td>
                <td>{bytes(s.status?.lag_bytes)}</td>
                <td>
                  {count(s.log?.retained_changes)} changes, {bytes(s.log?.retained_bytes)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <AddSource />
    </>
  );
}

function AddSource() {
  const [name, setName] = useState('');
  const [url, setUrl] = useState('');
  const [tables, setTables] = useState('');
  const [check, setCheck] = useState<Check | undefined>();
  const [failure, setFailure] = useState<ApiFailure | undefined>();
  const [busy, setBusy] = useState(false);
  const body = () => {
    const b: Record<string, unknown> = { name: name.trim(), tables: tables.split(',').map((t) => t.trim()).filter(Boolean) };
    if (url.trim()) b.url = url.trim();
    return b;
  };
  const run = async (what: () => Promise<void>) => {
    setFailure(undefined);
    setBusy(true);
    try {
      await what();
    } catch (err) {
      setFailure(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
    } finally {
      setBusy(false);
    }
  };
  const test = () => run(async () => setCheck(await api<Check>('POST', '/sources/test', body())));
  const save = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const s = await api<Source>('POST', '/sources', body());
      navigate(`/sources/${enc(s.name)}`);
    });
  };
  const fields = failure?.fields ?? {};
  return (
    <section aria-labelledby="add-source-h">
      <h2 id="add-source-h">Add a source</h2>
      <form onSubmit={save} aria-label="Add a source" noValidate>
        <Field label="Name" name="name" value={name} onInput={setName} errors={errorsFor(fields, 'name')} required />
        <Field
          label="Connection URL"
          name="url"
          value={url}
          onInput={setUrl}
          errors={errorsFor(fields, 'url')}
          placeholder="postgres://sluice:…@db:5432/shop"
          hint="Blank: the buffer's own database. The password is never shown again."
        />
        <Field label="Tables" name="tables" value={tables} onInput={setTables} errors={errorsFor(fields, 'tables')} hint="Comma-separated: orders, public.order_items" />
        <div class="actions">
          <button type="button" onClick={test} disabled={busy}>
            Test connection
          </button>
          <button type="submit" class="primary" disabled={busy}>
            Add source
          </button>
        </div>
        {check ? (
          <div role="status" class={check.ok ? 'check ok' : 'check failed'}>
            <p>
              <strong>{check.ok ? '✓ Capture can start.' : '✕ Capture cannot start yet.'}</strong>{' '}
              {check.connected ? `Connected: Postgres ${check.server_version}, wal_level ${check.wal_level}.` : 'Not connected.'}
            </p>
            {check.problems.length ? (
              <ul>
                {check.problems.map((p) => (
                  <li key={p}>{p}</li>
                ))}
              </ul>
            ) : null}
          </div>
        ) : null}
        {failure ? (
          <>
            <Problem summary={failure.summary} />
            <OtherErrors fields={fields} shown={['name', 'url', 'tables']} />
          </>
        ) : null}
      </form>
    </section>
  );
}

export function SourceView({ name }: { name: string }) {
  const path = `/sources/${enc(name)}`;
  const source = usePoll(() => api<Source>('GET', path), [name]);
  const tables = useLoad(() => api<{ data: SourceTable[] }>('GET', `${path}/tables`), [name]);
  const [check, setCheck] = useState<Check | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  const s = source.data;
  if (!s) return source.error ? <Problem summary={source.error.summary} /> : <Loading what={`source ${name}`} />;
  const test = async () => {
    setProblem(undefined);
    try {
      setCheck(await api<Check>('POST', `${path}/test`));
    } catch (err) {
      setProblem(err instanceof ApiFailure ? err.summary : String(err));
    }
  };
  return (
    <>
      <p class="crumbs">
        <a href={href('sources')}>Sources</a> / {s.name}
      </p>
      <h1>
        {s.name} <StateBadge state={stateOf(s)} />
      </h1>
      <div class="actions">
        <button type="button" onClick={test}>
          Test connection
        </button>
      </div>
      <Problem summary={problem} />
      {check ? (
        <div role="status" class={check.ok ? 'check ok' : 'check failed'}>
          <strong>{check.ok ? '✓ Capture can start.' : '✕ Problems:'}</strong>
          <ul>
            {check.problems.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        </div>
      ) : null}
      <h2>Tables</h2>
      {!tables.data ? (
        tables.error ? <Problem summary={tables.error.summary} /> : <Loading what="tables" />
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Table</th>
              <th scope="col">Replica identity</th>
              <th scope="col">Primary key</th>
            </tr>
          </thead>
          <tbody>
            {tables.data.data.map((t) => (
              <tr key={t.table}>
                <th scope="row">{t.table}</th>
                <td>{t.replica_identity}</td>
                <td>{t.primary_key.length ? t.primary_key.join(', ') : 'none (updates and deletes cannot be captured)'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Retained change log</h2>
      <p>
        {count(s.log?.retained_changes)} changes, {bytes(s.log?.retained_bytes)}, oldest {when(s.log?.oldest_commit_at)}.
        {s.log?.held_back?.warning ? <strong class="error-text"> {s.log.held_back.warning}</strong> : null}
      </p>
      <h2>Settings</h2>
      <Json value={s} />
    </>
  );
}
