// Create or edit a webhook or pull consumer. Tables are picked from what the
// chosen source captures; the API validates, and each of its errors is shown
// beside the field it names (the rest above the Save button).
import { useEffect, useState } from 'preact/hooks';
import { api, ApiFailure, enc } from '../api';
import { useLoad } from '../poll';
import { href, navigate } from '../router';
import type { Consumer, Source, SourceTable } from '../types';
import { Loading, SecretOnce } from '../ui/bits';
import { errorsFor, Field, FieldError, OtherErrors, Problem } from '../ui/Field';

interface FormState {
  name: string;
  kind: 'webhook' | 'pull';
  source: string;
  tables: string[];
  message_kind: 'change' | 'row';
  /** 'true', 'false', or a JSON map table → columns. */
  group_by: string;
  start: string;
  filter: string;
  transform: string;
  url: string;
  batch_size: string;
  max_in_flight: string;
  timeout: string;
  max_attempts: string;
  allow_private_ranges: string;
  ack_wait: string;
  max_ack_pending: string;
  max_deliver: string;
}

const EMPTY: FormState = {
  name: '',
  kind: 'webhook',
  source: '',
  tables: [],
  message_kind: 'change',
  group_by: 'true',
  start: 'now',
  filter: '',
  transform: '',
  url: '',
  batch_size: '',
  max_in_flight: '',
  timeout: '',
  max_attempts: '',
  allow_private_ranges: '',
  ack_wait: '',
  max_ack_pending: '',
  max_deliver: '',
};

const str = (v: unknown) => (v === undefined || v === null ? '' : String(v));

function fromConsumer(c: Consumer): FormState {
  const w = (c.webhook ?? {}) as Record<string, unknown>;
  const p = (c.pull ?? {}) as Record<string, unknown>;
  return {
    ...EMPTY,
    name: c.name,
    kind: c.kind,
    source: c.source ?? '',
    tables: c.tables ?? [],
    message_kind: (c.message_kind as 'change' | 'row') ?? 'change',
    group_by: c.group_by === undefined || c.group_by === true ? 'true' : c.group_by === false ? 'false' : JSON.stringify(c.group_by, null, 2),
    start: str(c.start) || 'now',
    filter: c.filter ? JSON.stringify(c.filter, null, 2) : '',
    transform: c.transform ? JSON.stringify(c.transform, null, 2) : '',
    url: str(w.url),
    batch_size: str(w.batch_size),
    max_in_flight: str(w.max_in_flight),
    timeout: str(w.timeout),
    max_attempts: str((w.retry as Record<string, unknown> | undefined)?.max_attempts),
    allow_private_ranges: ((w.allow_private_ranges as string[] | undefined) ?? []).join(', '),
    ack_wait: str(p.ack_wait),
    max_ack_pending: str(p.max_ack_pending),
    max_deliver: str(p.max_deliver),
  };
}

/** The consumer body the form describes (the YAML shape); blank fields are left to their defaults. */
function toBody(f: FormState, editing: boolean): Record<string, unknown> {
  const num = (v: string) => (v.trim() === '' ? undefined : /^\d+$/.test(v.trim()) ? Number(v.trim()) : v.trim());
  const json = (v: string, name: string) => {
    if (!v.trim()) return editing ? null : undefined;
    try {
      return JSON.parse(v);
    } catch {
      throw new ApiFailure(422, `${name} is not valid JSON.`, { [name]: ['is not valid JSON'] });
    }
  };
  const prune = (o: Record<string, unknown>) => {
    for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
    return o;
  };
  const body: Record<string, unknown> = {
    name: f.name.trim(),
    kind: f.kind,
    source: f.source,
    tables: f.tables,
    message_kind: f.message_kind,
    group_by: f.group_by === 'true' ? true : f.group_by === 'false' ? false : json(f.group_by, 'group_by'),
    filter: json(f.filter, 'filter'),
    transform: json(f.transform, 'transform'),
  };
  if (!editing) body.start = f.start.trim() || 'now';
  if (f.kind === 'webhook') {
    const ranges = f.allow_private_ranges.split(',').map((s) => s.trim()).filter(Boolean);
    body.webhook = prune({
      url: f.url.trim(),
      batch_size: num(f.batch_size),
      max_in_flight: num(f.max_in_flight),
      timeout: f.timeout.trim() || undefined,
      retry: f.max_attempts.trim() ? { max_attempts: num(f.max_attempts) } : undefined,
      allow_private_ranges: ranges.length ? ranges : undefined,
    });
  } else {
    body.pull = prune({ ack_wait: f.ack_wait.trim() || undefined, max_ack_pending: num(f.max_ack_pending), max_deliver: num(f.max_deliver) });
  }
  return prune(body);
}

export function ConsumerForm({ name }: { name?: string }) {
  const editing = name !== undefined;
  const existing = useLoad(() => (editing ? api<Consumer>('GET', `/consumers/${enc(name!)}`) : Promise.resolve(null)), [name]);
  const sources = useLoad(() => api<{ data: Source[] }>('GET', '/sources'), []);
  const [f, setF] = useState<FormState>(EMPTY);
  const [loaded, setLoaded] = useState(!editing);
  const [failure, setFailure] = useState<ApiFailure | undefined>();
  const [created, setCreated] = useState<{ name: string; secret?: string } | undefined>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (editing && existing.data && !loaded) {
      setF(fromConsumer(existing.data));
      setLoaded(true);
    }
  }, [existing.data]);
  useEffect(() => {
    if (!editing && !f.source && sources.data?.data.length) setF((s) => ({ ...s, source: sources.data!.data[0].name }));
  }, [sources.data]);

  const tables = useLoad(
    () => (f.source ? api<{ data: SourceTable[] }>('GET', `/sources/${enc(f.source)}/tables`) : Promise.resolve({ data: [] })),
    [f.source],
  );

  if (editing && !loaded) return existing.error ? <Problem summary={existing.error.summary} /> : <Loading what="the consumer" />;
  if (existing.data?.stream) {
    return <p>Consumers of a stream are changed through the API (PATCH /api/consumers/{name}) or the config file; this form edits table consumers.</p>;
  }
  if (created) {
    return created.secret ? (
      <SecretOnce label={`Consumer "${created.name}" created. Its signing secret:`} secret={created.secret} onDone={() => navigate(`/consumers/${enc(created.name)}`)} />
    ) : null;
  }

  const set = <K extends keyof FormState>(k: K) => (v: FormState[K]) => setF((s) => ({ ...s, [k]: v }));
  const fields = failure?.fields ?? {};
  const err = (k: string) => errorsFor(fields, k);
  const toggleTable = (t: string) => setF((s) => ({ ...s, tables: s.tables.includes(t) ? s.tables.filter((x) => x !== t) : [...s.tables, t] }));

  const submit = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    setBusy(true);
    try {
      const body = toBody(f, editing);
      if (editing) {
        delete body.name;
        delete body.kind;
        await api('PATCH', `/consumers/${enc(name!)}`, body);
        navigate(`/consumers/${enc(name!)}`);
      } else {
        const c = await api<Consumer>('POST', '/consumers', body);
        const secret = c.webhook?.secrets?.[0];
        if (secret) setCreated({ name: c.name, secret });
        else navigate(`/consumers/${enc(c.name)}`);
      }
    } catch (err) {
      setFailure(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
      // The summary is above the Save button; move focus to the first field in error.
      setTimeout(() => (document.querySelector('[aria-invalid="true"]') as HTMLElement | null)?.focus(), 0);
    } finally {
      setBusy(false);
    }
  };

  const available = tables.data?.data ?? [];
  const sourceTables = available.length ? available.map((t) => t.table) : (sources.data?.data.find((s) => s.name === f.source)?.tables ?? []);
  const allTables = [...new Set([...sourceTables, ...f.tables])];
  const shown = ['name', 'kind', 'source', 'tables', 'message_kind', 'group_by', 'start', 'filter', 'transform', 'webhook', 'pull'];

  return (
    <>
      <p class="crumbs">
        <a href={href()}>Overview</a> / {editing ? <a href={href('consumers', name!)}>{name}</a> : 'new consumer'}
      </p>
      <h1>{editing ? `Edit ${name}` : 'New consumer'}</h1>
      <form onSubmit={submit} aria-label={editing ? 'Edit consumer' : 'New consumer'} noValidate>
        {!editing ? (
          <Field label="Name" name="name" value={f.name} onInput={set('name')} errors={err('name')} required hint="Also the pull API's name; letters, digits, - and _." />
        ) : null}
        <fieldset disabled={editing}>
          <legend>Kind</legend>
          {(['webhook', 'pull'] as const).map((k) => (
            <label key={k} class="choice">
              <input type="radio" name="kind" value={k} checked={f.kind === k} onChange={() => set('kind')(k)} /> {k === 'webhook' ? 'Webhook (pushed to a URL)' : 'Pull (receive / ack over HTTP)'}
            </label>
          ))}
          <FieldError id="kind-error" errors={err('kind')} />
        </fieldset>
        <div class={`field${err('source') ? ' invalid' : ''}`}>
          <label for="field-source">Source</label>
          <select id="field-source" value={f.source} aria-invalid={err('source') ? true : undefined} aria-describedby={err('source') ? 'source-error' : undefined} onChange={(e) => setF((s) => ({ ...s, source: (e.currentTarget as HTMLSelectElement).value, tables: [] }))}>
            {(sources.data?.data ?? []).map((s) => (
              <option key={s.name} value={s.name}>
                {s.name}
              </option>
            ))}
          </select>
          <FieldError id="source-error" errors={err('source')} />
        </div>
        <fieldset class={err('tables') ? 'invalid' : ''} aria-describedby={err('tables') ? 'tables-error' : undefined}>
          <legend>Tables</legend>
          {allTables.length === 0 ? <p class="hint">{tables.error ? tables.error.summary : 'The source captures no table yet.'}</p> : null}
          {allTables.map((t) => {
            const info = available.find((a) => a.table === t);
            return (
              <label key={t} class="choice">
                <input type="checkbox" name="tables" value={t} checked={f.tables.includes(t)} onChange={() => toggleTable(t)} /> {t}
                {info ? <span class="hint"> (replica identity {info.replica_identity})</span> : null}
              </label>
            );
          })}
          <FieldError id="tables-error" errors={err('tables')} />
        </fieldset>
        <div class="field">
          <label for="field-message_kind">Messages</label>
          <select id="field-message_kind" value={f.message_kind} onChange={(e) => set('message_kind')((e.currentTarget as HTMLSelectElement).value as 'change' | 'row')}>
            <option value="change">changes (record, changes, action)</option>
            <option value="row">rows (the row as it is now; deletes as tombstones)</option>
          </select>
          <FieldError id="message_kind-error" errors={err('message_kind')} />
        </div>
        <fieldset class={err('group_by') ? 'invalid' : ''}>
          <legend>Order</legend>
          <label class="choice">
            <input type="radio" name="group_by" checked={f.group_by === 'true'} onChange={() => set('group_by')('true')} /> in order per row (grouped by primary key)
          </label>
          <label class="choice">
            <input type="radio" name="group_by" checked={f.group_by !== 'true' && f.group_by !== 'false'} onChange={() => set('group_by')('{\n  "public.orders": ["customer_id"]\n}')} /> in order per
            group of columns I choose
          </label>
          <label class="choice">
            <input type="radio" name="group_by" checked={f.group_by === 'false'} onChange={() => set('group_by')('false')} /> no order (fastest)
          </label>
          {f.group_by !== 'true' && f.group_by !== 'false' ? (
            <Field label="Group columns per table (JSON)" name="group_by" multiline value={f.group_by} onInput={set('group_by')} errors={err('group_by')} />
          ) : (
            <FieldError id="group_by-error" errors={err('group_by')} />
          )}
        </fieldset>
        {!editing ? <Field label="Start" name="start" value={f.start} onInput={set('start')} errors={err('start')} hint="now, earliest, an RFC 3339 time or an LSN" /> : null}
        {f.kind === 'webhook' ? (
          <fieldset>
            <legend>Webhook</legend>
            <Field label="URL" name="webhook.url" type="url" value={f.url} onInput={set('url')} errors={err('webhook.url')} required placeholder="https://example.com/hooks/sluice" />
            <Field label="Batch size" name="webhook.batch_size" value={f.batch_size} onInput={set('batch_size')} errors={err('webhook.batch_size')} placeholder="100" />
            <Field label="Requests in flight" name="webhook.max_in_flight" value={f.max_in_flight} onInput={set('max_in_flight')} errors={err('webhook.max_in_flight')} placeholder="4" />
            <Field label="Timeout" name="webhook.timeout" value={f.timeout} onInput={set('timeout')} errors={err('webhook.timeout')} placeholder="30s" />
            <Field label="Attempts before dead-lettering" name="webhook.retry.max_attempts" value={f.max_attempts} onInput={set('max_attempts')} errors={err('webhook.retry')} placeholder="until 24 h have passed" />
            <Field
              label="Private address ranges allowed"
              name="webhook.allow_private_ranges"
              value={f.allow_private_ranges}
              onInput={set('allow_private_ranges')}
              errors={err('webhook.allow_private_ranges')}
              hint="Comma-separated CIDR ranges, for a receiver on a private network (127.0.0.0/8 for this machine)."
            />
          </fieldset>
        ) : (
          <fieldset>
            <legend>Pull</legend>
            <Field label="Visibility timeout (ack_wait)" name="pull.ack_wait" value={f.ack_wait} onInput={set('ack_wait')} errors={err('pull.ack_wait')} placeholder="30s" />
            <Field label="Most in flight (max_ack_pending)" name="pull.max_ack_pending" value={f.max_ack_pending} onInput={set('max_ack_pending')} errors={err('pull.max_ack_pending')} placeholder="10000" />
            <Field label="Deliveries before dead-lettering (max_deliver)" name="pull.max_deliver" value={f.max_deliver} onInput={set('max_deliver')} errors={err('pull.max_deliver')} placeholder="never" />
          </fieldset>
        )}
        <Field label="Filter (JSON, optional)" name="filter" multiline value={f.filter} onInput={set('filter')} errors={err('filter')} placeholder='{"actions": ["insert", "update"], "where": {"public.orders": "amount >= 100"}}' />
        <Field label="Transform (JSON, optional)" name="transform" multiline value={f.transform} onInput={set('transform')} errors={err('transform')} placeholder='{"path": "record"}' />
        {failure ? (
          <>
            <Problem summary={failure.summary} />
            <OtherErrors fields={fields} shown={shown} />
          </>
        ) : null}
        <button type="submit" class="primary" disabled={busy}>
          {editing ? 'Save changes' : 'Create consumer'}
        </button>
      </form>
    </>
  );
}
