// Small shared pieces: state badges (a word, never colour alone), JSON blocks,
// tabs, a button that shows it is working, a secret shown once.
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';

const STATE_MARK: Record<string, string> = {
  active: '●',
  running: '●',
  paused: '❚❚',
  disabled: '✕',
  failing: '▲',
  standing_by: '○',
  stopped: '✕',
};

export function StateBadge({ state }: { state: string }) {
  return (
    <span class={`badge state-${state}`}>
      <span aria-hidden="true">{STATE_MARK[state] ?? '•'} </span>
      {state.replace('_', ' ')}
    </span>
  );
}

export function Json({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function Tabs<T extends string>({ tabs, current, onSelect, label }: { tabs: [T, string][]; current: T; onSelect: (t: T) => void; label: string }) {
  const keyDown = (e: KeyboardEvent) => {
    const i = tabs.findIndex(([t]) => t === current);
    const next = e.key === 'ArrowRight' ? (i + 1) % tabs.length : e.key === 'ArrowLeft' ? (i - 1 + tabs.length) % tabs.length : -1;
    if (next < 0) return;
    e.preventDefault();
    onSelect(tabs[next][0]);
    (document.getElementById(`tab-${tabs[next][0]}`) as HTMLElement | null)?.focus();
  };
  return (
    <div class="tabs" role="tablist" aria-label={label} onKeyDown={keyDown}>
      {tabs.map(([t, text]) => (
        <button
          key={t}
          id={`tab-${t}`}
          role="tab"
          type="button"
          aria-selected={t === current}
          aria-controls={`panel-${t}`}
          tabIndex={t === current ? 0 : -1}
          onClick={() => onSelect(t)}
        >
          {text}
        </button>
      ))}
    </div>
  );
}

export function Panel({ id, label, children }: { id: string; label: string; children: ComponentChildren }) {
  return (
    <section id={`panel-${id}`} role="tabpanel" aria-labelledby={`tab-${id}`} aria-label={label} class="panel">
      {children}
    </section>
  );
}

/** Runs an async action; disabled while it runs. */
export function Action(props: { onRun: () => Promise<unknown>; children: ComponentChildren; kind?: 'danger' | 'primary'; confirm?: string; disabled?: boolean; label?: string }) {
  const [busy, setBusy] = useState(false);
  const run = async () => {
    if (props.confirm && !confirm(props.confirm)) return;
    setBusy(true);
    try {
      await props.onRun();
    } finally {
      setBusy(false);
    }
  };
  return (
    <button type="button" class={props.kind ?? ''} disabled={busy || props.disabled} aria-busy={busy} aria-label={props.label} onClick={run}>
      {props.children}
    </button>
  );
}

/** A secret the API returns once: shown in full here, with a warning. */
export function SecretOnce({ label, secret, onDone }: { label: string; secret: string; onDone: () => void }) {
  return (
    <div class="secret-once" role="status">
      <p>
        <strong>{label}</strong> It is shown this once: copy it now.
      </p>
      <input type="text" readOnly value={secret} aria-label={label} class="secret" onFocus={(e) => (e.currentTarget as HTMLInputElement).select()} />
      <button type="button" onClick={onDone}>
        I have copied it
      </button>
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" role="status">
      Loading {what}…
    </p>
  );
}
