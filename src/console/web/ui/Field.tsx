// A labelled form control with the API's error for it shown beside it (and
// tied to it with aria-describedby, so a screen reader reads it too).
import type { ComponentChildren } from 'preact';

export function FieldError({ id, errors }: { id: string; errors?: string[] }) {
  if (!errors?.length) return null;
  return (
    <p class="field-error" id={id} role="alert">
      {errors.join('; ')}
    </p>
  );
}

export function Field(props: {
  label: string;
  name: string;
  value: string;
  onInput: (value: string) => void;
  errors?: string[];
  type?: string;
  placeholder?: string;
  hint?: ComponentChildren;
  required?: boolean;
  multiline?: boolean;
  autocomplete?: string;
}) {
  const id = `field-${props.name.replace(/[^a-zA-Z0-9_-]/g, '-')}`;
  const errId = `${id}-error`;
  const hintId = `${id}-hint`;
  const described = [props.errors?.length ? errId : '', props.hint ? hintId : ''].filter(Boolean).join(' ') || undefined;
  const common = {
    id,
    name: props.name,
    value: props.value,
    placeholder: props.placeholder,
    required: props.required,
    'aria-invalid': props.errors?.length ? true : undefined,
    'aria-describedby': described,
    onInput: (e: Event) => props.onInput((e.currentTarget as HTMLInputElement).value),
  };
  return (
    <div class={`field${props.errors?.length ? ' invalid' : ''}`}>
      <label for={id}>{props.label}</label>
      {props.multiline ? <textarea rows={4} {...common} /> : <input type={props.type ?? 'text'} autocomplete={props.autocomplete ?? 'off'} {...common} />}
      {props.hint ? (
        <p class="hint" id={hintId}>
          {props.hint}
        </p>
      ) : null}
      <FieldError id={errId} errors={props.errors} />
    </div>
  );
}

/** The API's summary, above a form or a panel. */
export function Problem({ summary }: { summary?: string | null }) {
  if (!summary) return null;
  return (
    <p class="problem" role="alert">
      <strong>Error: </strong>
      {summary}
    </p>
  );
}

/** Errors the API gave for fields this form does not show, so none is hidden. */
export function OtherErrors({ fields, shown }: { fields: Record<string, string[]>; shown: string[] }) {
  const rest = Object.entries(fields).filter(([k]) => !shown.some((s) => k === s || k.startsWith(`${s}.`) || k.startsWith(`${s}[`) || k.startsWith(`${s}/`)));
  if (!rest.length) return null;
  return (
    <ul class="problem" role="alert">
      {rest.map(([k, v]) => (
        <li key={k}>
          <code>{k}</code>: {v.join('; ')}
        </li>
      ))}
    </ul>
  );
}

/** The errors of one field and the fields under it (`webhook.url`, `tables/0`). */
export function errorsFor(fields: Record<string, string[]>, name: string): string[] | undefined {
  const found = Object.entries(fields)
    .filter(([k]) => k === name || k.startsWith(`${name}.`) || k.startsWith(`${name}[`) || k.startsWith(`${name}/`))
    .flatMap(([k, v]) => (k === name ? v : v.map((m) => `${k}: ${m}`)));
  return found.length ? found : undefined;
}
