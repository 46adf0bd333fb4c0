// Sign in with an API token: an admin token, or one scoped to consumers (which
// then sees only those). The token is checked with GET /api/me before it is kept.
import { useState } from 'preact/hooks';
import { api, ApiFailure, session } from '../api';
import type { Me } from '../types';
import { Field } from '../ui/Field';

export function SignIn({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) return setError('Paste an API token.');
    setBusy(true);
    session.signIn(value);
    try {
      onSignedIn(await api<Me>('GET', '/me'));
    } catch (err) {
      sessionStorage.clear();
      setError(err instanceof ApiFailure ? err.summary : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <h1>Sluice console</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <Field
          label="API token"
          name="token"
          type="password"
          autocomplete="current-password"
          value={token}
          onInput={setToken}
          errors={error ? [error] : undefined}
          hint={
            <>
              An admin token (<code>sluice start</code> prints one, or <code>.sluice/admin-token</code>) or a token scoped to consumers. It is
              kept in this tab's session storage only.
            </>
          }
        />
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
