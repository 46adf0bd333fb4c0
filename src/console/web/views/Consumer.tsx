// One consumer: its figures (live), its actions (admin tokens), and a tab per
// concern: settings, recent messages (peeked, never delivered), the webhook
// attempt log, dead letters, backfills, and a filter / transform test panel.
import { useState } from 'preact/hooks';
import { api, ApiFailure, enc } from '../api';
import { count, duration } from '../format';
import { usePoll } from '../poll';
import { href, navigate } from '../router';
import type { Consumer, Me, Stats } from '../types';
import { Action, Json, Loading, Panel, SecretOnce, StateBadge, Tabs } from '../ui/bits';
import { Problem } from '../ui/Field';
import { AttemptsTab } from './consumer/Attempts';
import { BackfillsTab } from './consumer/Backfills';
import { DeadLettersTab } from './consumer/DeadLetters';
import { MessagesTab } from './consumer/Messages';
import { RewindForm } from './consumer/Rewind';
import { TestTab } from './consumer/Test';

const STATS_SCAN = 10_000;

type Tab = 'settings' | 'messages' | 'attempts' | 'dead' | 'backfills' | 'test';

export function ConsumerView({ name, me }: { name: string; me: Me }) {
  const path = `/consumers/${enc(name)}`;
  // Polled too: its state can change elsewhere (its endpoint's answers disable it, another user pauses it).
  const consumer = usePoll(() => api<Consumer>('GET', path), [name]);
  // Bounded: a consumer far behind is not counted in full every 3 s (its pending then reads "≥ n").
  const stats = usePoll(() => api<Stats>('GET', `${path}/stats?scan_limit=${STATS_SCAN}`), [name]);
  const [tab, setTab] = useState<Tab>('settings');
  const [problem, setProblem] = useState<string | undefined>();
  const [secret, setSecret] = useState<string | undefined>();
  const [rewinding, setRewinding] = useState(false);

  const c = consumer.data;
  if (!c) return consumer.error ? <Problem summary={consumer.error.summary} /> : <Loading what={`consumer ${name}`} />;

  /** Runs an action; its refusal is shown, and the consumer read again. */
  const act = (run: () => Promise<unknown>) => async () => {
    setProblem(undefined);
    try {
      await run();
      consumer.reload();
      stats.reload();
    } catch (err) {
      setProblem(err instanceof ApiFailure ? err.summary : String(err));
    }
  };

  const tabs: [Tab, string][] = [
    ['settings', 'Settings'],
    ['messages', 'Recent messages'],
    ...(c.kind === 'webhook' ? ([['attempts', 'Attempt log']] as [Tab, string][]) : []),
    ['dead', 'Dead letters'],
    ...(c.source ? ([['backfills', 'Backfills']] as [Tab, string][]) : []),
    ...(me.admin ? ([['test', 'Filter & transform test']] as [Tab, string][]) : []),
  ];
  const s = stats.data;

  return (
    <>
      <p class="crumbs">
        <a href={href()}>Overview</a> / consumer
      </p>
      <h1>
        {c.name} <StateBadge state={c.state} />
      </h1>
      {c.state_reason ? <p class="error-text">{c.state_reason}</p> : null}
      <dl class="figures" aria-live="polite">
        <div>
          <dt>Kind</dt>
          <dd>{c.kind}</dd>
        </div>
        <div>
          <dt>{c.stream ? 'Stream' : 'Source'}</dt>
          <dd>{c.stream ?? c.source}</dd>
        </div>
        <div>
          <dt>Pending</dt>
          <dd>
            {s?.pending_at_least ? '≥ ' : ''}
            {count(s?.pending)}
          </dd>
        </div>
        <div>
          <dt>In flight</dt>
          <dd>{count(s?.in_flight)}</dd>
        </div>
        <div>
          <dt>Dead letters</dt>
          <dd>{count(s?.dead_lettered)}</dd>
        </div>
        <div>
          <dt>Oldest pending</dt>
          <dd>{duration(s?.oldest_pending_age_ms)}</dd>
        </div>
      </dl>
      {me.admin ? (
        <div class="actions" role="group" aria-label="Consumer actions">
          {c.state === 'paused' || c.state === 'disabled' ? (
            <Action kind="primary" onRun={act(() => api('POST', `${path}/resume`))}>
              Resume
            </Action>
          ) : (
            <Action onRun={act(() => api('POST', `${path}/pause`, { reason: 'paused from the console' }))}>Pause</Action>
          )}
          <a class="button" href={href('consumers', c.name, 'edit')}>
            Edit
          </a>
          {c.kind === 'webhook' ? (
            <Action
              confirm="Rotate the signing secret? The new one signs at once; the old one keeps signing for 24 hours."
              onRun={act(async () => setSecret((await api<{ secret: string }>('POST', `${path}/rotate-secret`, {})).secret))}
            >
              Rotate secret
            </Action>
          ) : null}
          <button type="button" onClick={() => setRewinding(!rewinding)} aria-expanded={rewinding}>
            Rewind…
          </button>
          <Action
            kind="danger"
            confirm={`Delete consumer "${c.name}"? Its delivery state (position, messages in flight, dead letters) is deleted; the changes stay in the log.`}
            onRun={act(async () => {
              await api('DELETE', path);
              navigate('/');
            })}
          >
            Delete
          </Action>
        </div>
      ) : null}
      <Problem summary={problem} />
      {secret ? <SecretOnce label="New signing secret." secret={secret} onDone={() => setSecret(undefined)} /> : null}
      {rewinding ? <RewindForm path={path} onDone={() => (setRewinding(false), stats.reload())} /> : null}

      <Tabs label="Consumer details" tabs={tabs} current={tab} onSelect={setTab} />
      {tab === 'settings' ? (
        <Panel id="settings" label="Settings">
          <Json value={c} />
        </Panel>
      ) : null}
      {tab === 'messages' ? (
        <Panel id="messages" label="Recent messages">
          <MessagesTab path={path} />
        </Panel>
      ) : null}
      {tab === 'attempts' ? (
        <Panel id="attempts" label="Attempt log">
          <AttemptsTab path={path} />
        </Panel>
      ) : null}
      {tab === 'dead' ? (
        <Panel id="dead" label="Dead letters">
          <DeadLettersTab path={path} admin={me.admin} onChange={stats.reload} />
        </Panel>
      ) : null}
      {tab === 'backfills' ? (
        <Panel id="backfills" label="Backfills">
          <BackfillsTab path={path} tables={c.tables ?? []} admin={me.admin} />
        </Panel>
      ) : null}
      {tab === 'test' ? (
        <Panel id="test" label="Filter and transform test">
          <TestTab path={path} consumer={c} />
        </Panel>
      ) : null}
    </>
  );
}
