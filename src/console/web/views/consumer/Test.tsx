// Try a filter and a transform before saving them: on the latest retained
// change of a table or on a sample message (POST …/transform/test saves nothing).
import { useState } from 'preact/hooks';
import { api, ApiFailure } from '../../api';
import type { Consumer } from '../../types';
import { Json } from '../../ui/bits';
import { errorsFor, Field, OtherErrors, Problem } from '../../ui/Field';

export function TestTab({ path, consumer }: { path: string; consumer: Consumer }) {
  const [table, setTable] = useState(consumer.tables?.[0] ?? '');
  const [filter, setFilter] = useState(consumer.filter ? JSON.stringify(consumer.filter, null, 2) : '');
  const [transform, setTransform] = useState(consumer.transform ? JSON.stringify(consumer.transform, null, 2) : '');
  const [result, setResult] = useState<unknown>();
  const [failure, setFailure] = useState<ApiFailure | undefined>();
  const parse = (text: string, name: string): unknown => {
    if (!text.trim()) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiFailure(422, `${name} is not JSON.`, { [name]: ['is not JSON'] });
    }
  };
  const run = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    setResult(undefined);
    try {
      const body: Record<string, unknown> = { table };
      const f = parse(filter, 'filter');
      const t = parse(transform, 'transform');
      if (f !== undefined) body.filter = f;
      if (t !== undefined) body.transform = t;
      setResult(await api('POST', `${path}/transform/test`, body));
    } catch (err) {
      setFailure(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
    }
  };
  const fields = failure?.fields ?? {};
  return (
    <form onSubmit={run} aria-label="Test a filter and a transform">
      <Field label="Table (its latest retained change is the input)" name="table" value={table} onInput={setTable} errors={errorsFor(fields, 'table')} />
      <Field label="Filter (JSON)" name="filter" multiline value={filter} onInput={setFilter} errors={errorsFor(fields, 'filter')} placeholder='{"actions": ["insert"], "where": {"public.orders": "amount >= 100"}}' />
      <Field label="Transform (JSON)" name="transform" multiline value={transform} onInput={setTransform} errors={errorsFor(fields, 'transform')} placeholder='{"path": "record"}' />
      <button type="submit" class="primary">
        Run test
      </button>
      {failure ? (
        <>
          <Problem summary={failure.summary} />
          <OtherErrors fields={fields} shown={['table', 'filter', 'transform']} />
        </>
      ) : null}
      {result !== undefined ? (
        <section aria-label="Test result">
          <h3>Result</h3>
          <Json value={result} />
        </section>
      ) : null}
      <p class="hint">
        To keep a filter or transform, <a href={`#/consumers/${encodeURIComponent(consumer.name)}/edit`}>edit the consumer</a>.
      </p>
    </form>
  );
}
