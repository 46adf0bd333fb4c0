// The console's shell: sign-in, navigation, the lost-connection banner, and
// the view the URL's hash names. Views: overview, consumer (and its create /
// edit form), sources, tokens; a new feature adds a view or a consumer tab.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiFailure, onConnection, onSignOut, session } from './api';
import { href, navigate, useRoute } from './router';
import type { Me } from './types';
import { ConsumerForm } from './views/ConsumerForm';
import { ConsumerView } from './views/Consumer';
import { Overview } from './views/Overview';
import { SignIn } from './views/SignIn';
import { SourcesView, SourceView } from './views/Sources';
import { TokensView } from './views/Tokens';
import './style.css';

function App() {
  const [me, setMe] = useState<Me | null>(null);
  const [checking, setChecking] = useState(Boolean(session.token()));
  const [offline, setOffline] = useState(false);
  const route = useRoute();

  useEffect(() => onConnection((online) => setOffline(!online)), []);
  useEffect(
    () =>
      onSignOut(() => {
        setMe(null);
        navigate('/');
      }),
    [],
  );
  // A token kept from earlier in this tab: still valid?
  useEffect(() => {
    if (!session.token()) return;
    api<Me>('GET', '/me')
      .then(setMe)
      .catch((err) => {
        if (err instanceof ApiFailure && err.status === 401) session.signOut();
      })
      .finally(() => setChecking(false));
  }, []);

  const banner = offline ? (
    <div class="banner" role="alert">
      Lost the connection to the gateway. Retrying every few seconds…
    </div>
  ) : null;

  if (!me) {
    return (
      <>
        {banner}
        {checking ? <p role="status">Checking your token…</p> : <SignIn onSignedIn={setMe} />}
      </>
    );
  }

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header>
        <span class="brand">Sluice</span>
        <nav aria-label="Main">
          <a href={href()} aria-current={route.length === 0 ? 'page' : undefined}>
            Overview
          </a>
          {me.admin ? (
            <>
              <a href={href('consumers', 'new')} aria-current={route[0] === 'consumers' && route[1] === 'new' ? 'page' : undefined}>
                New consumer
              </a>
              <a href={href('sources')} aria-current={route[0] === 'sources' ? 'page' : undefined}>
                Sources
              </a>
              <a href={href('tokens')} aria-current={route[0] === 'tokens' ? 'page' : undefined}>
                Tokens
              </a>
            </>
          ) : null}
        </nav>
        <span class="who">
          {me.name ?? 'bootstrap token'} ({me.admin ? 'admin' : `scoped to ${me.consumers?.join(', ')}`})
        </span>
        <button type="button" onClick={() => session.signOut()}>
          Sign out
        </button>
      </header>
      {banner}
      <main id="main" tabIndex={-1}>
        <Route route={route} me={me} />
      </main>
    </>
  );
}

function Route({ route, me }: { route: string[]; me: Me }) {
  const [first, second, third] = route;
  if (!first) return <Overview me={me} />;
  if (first === 'consumers' && second === 'new' && me.admin) return <ConsumerForm />;
  if (first === 'consumers' && second && third === 'edit' && me.admin) return <ConsumerForm name={second} />;
  if (first === 'consumers' && second) return <ConsumerView name={second} me={me} />;
  if (first === 'sources' && second && me.admin) return <SourceView name={second} />;
  if (first === 'sources' && me.admin) return <SourcesView />;
  if (first === 'tokens' && me.admin) return <TokensView />;
  return (
    <p>
      Nothing here. <a href={href()}>Back to the overview</a>.
    </p>
  );
}

render(<App />, document.getElementById('app')!);
