// API tokens: create (the secret is shown once), list with last use, revoke.
import { useState } from 'preact/hooks';
import { api, ApiFailure, enc } from '../api';
import { ago, when } from '../format';
import { useLoad } from '../poll';
import type { Token } from '../types';
import { Action, Loading, SecretOnce } from '../ui/bits';
import { errorsFor, Field, OtherErrors, Problem } from '../ui/Field';

export function TokensView() {
  const list = useLoad(() => api<{ data: Token[] }>('GET', '/tokens'), []);
  const consumers = useLoad(() => api<{ data: { name: string }[] }>('GET', '/consumers'), []);
  const [name, setName] = useState('');
  const [scoped, setScoped] = useState(false);
  const [picked, setPicked] = useState<string[]>([]);
  const [failure, setFailure] = useState<ApiFailure | undefined>();
  const [secret, setSecret] = useState<string | undefined>();
  const [problem, setProblem] = useState<string | undefined>();

  const create = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    try {
      const body: Record<string, unknown> = { name: name.trim() };
      if (scoped) body.consumers = picked;
      const t = await api<{ token: string }>('POST', '/tokens', body);
      setSecret(t.token);
      setName('');
      setPicked([]);
      list.reload();
    } catch (err) {
      setFailure(err instanceof ApiFailure ? err : new ApiFailure(0, String(err)));
    }
  };
  const revoke = (t: Token) => async () => {
    setProblem(undefined);
    try {
      await api('DELETE', `/tokens/${enc(t.id)}`);
      list.reload();
    } catch (err) {
      setProblem(err instanceof ApiFailure ? err.summary : String(err));
    }
  };
  const fields = failure?.fields ?? {};
  return (
    <>
      <h1>Tokens</h1>
      {secret ? <SecretOnce label="New token." secret={secret} onDone={() => setSecret(undefined)} /> : null}
      <Problem summary={problem} />
      {!list.data ? (
        list.error ? <Problem summary={list.error.summary} /> : <Loading what="tokens" />
      ) : (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">May call</th>
              <th scope="col">Token</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.data.data.map((t) => (
              <tr key={t.id}>
                <th scope="row">{t.name}</th>
                <td>{t.admin ? 'everything (admin)' : `consumers ${t.consumers?.join(', ')}`}</td>
                <td>
                  <code>{t.hint}</code>
                </td>
                <td>{when(t.created_at)}</td>
                <td>{ago(t.last_used_at)}</td>
                <td>
                  <Action kind="danger" label={`Revoke ${t.name}`} confirm={`Revoke token "${t.name}"? Whatever uses it stops working at once.`} onRun={revoke(t)}>
                    Revoke
                  </Action>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <section aria-labelledby="new-token-h">
        <h2 id="new-token-h">Create a token</h2>
        <form onSubmit={create} aria-label="Create a token" noValidate>
          <Field label="Name" name="name" value={name} onInput={setName} errors={errorsFor(fields, 'name')} required />
          <fieldset>
            <legend>May call</legend>
            <label class="choice">
              <input type="radio" name="scope" checked={!scoped} onChange={() => setScoped(false)} /> everything (an admin token)
            </label>
            <label class="choice">
              <input type="radio" name="scope" checked={scoped} onChange={() => setScoped(true)} /> only these consumers (pull, and reading them here)
            </label>
            {scoped
              ? (consumers.data?.data ?? []).map((c) => (
                  <label key={c.name} class="choice nested">
                    <input
                      type="checkbox"
                      name="consumers"
                      value={c.name}
                      checked={picked.includes(c.name)}
                      onChange={() => setPicked(picked.includes(c.name) ? picked.filter((p) => p !== c.name) : [...picked, c.name])}
                    />{' '}
                    {c.name}
                  </label>
                ))
              : null}
            {errorsFor(fields, 'consumers') ? <p class="field-error" role="alert">{errorsFor(fields, 'consumers')!.join('; ')}</p> : null}
          </fieldset>
          {failure ? (
            <>
              <Problem summary={failure.summary} />
              <OtherErrors fields={fields} shown={['name', 'consumers']} />
            </>
          ) : null}
          <button type="submit" class="primary">
            Create token
          </button>
        </form>
      </section>
    </>
  );
}
