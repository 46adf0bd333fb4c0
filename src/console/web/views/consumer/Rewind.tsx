// Rewind: deliver the retained changes again from a point (earliest, a time,
// an LSN); the API answers how many it will redeliver.
import { useState } from 'preact/hooks';
import { api, ApiFailure } from '../../api';
import { count } from '../../format';
import { errorsFor, Field, Problem } from '../../ui/Field';

export function RewindForm({ path, onDone }: { path: string; onDone: () => void }) {
  const [to, setTo] = useState('earliest');
  const [failure, setFailure] = useState<ApiFailure | undefined>();
  const [result, setResult] = useState<string | undefined>();
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!confirm(`Deliver every retained change from ${to} again?`)) return;
    setFailure(undefined);
    try {
      const r = await api<{ redelivering: number }>('POST', `${path}/rewind`, { to });
      setResult(`Redelivering ${count(r.redelivering)} changes.`);
      onDone();
    } catch (err) {
      setFailure(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
    }
  };
  return (
    <form class="inline-form" onSubmit={submit} aria-label="Rewind">
      <Field
        label="Rewind to"
        name="to"
        value={to}
        onInput={setTo}
        errors={failure ? errorsFor(failure.fields, 'to') : undefined}
        hint={<>earliest, an RFC 3339 time (2026-12-01T09:30:00Z) or an LSN (16/B374D848)</>}
      />
      <button type="submit" class="primary">
        Rewind
      </button>
      {failure && !errorsFor(failure.fields, 'to') ? <Problem summary={failure.summary} /> : null}
      {result ? <p role="status">{result}</p> : null}
    </form>
  );
}
