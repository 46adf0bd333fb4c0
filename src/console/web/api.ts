// Every call the console makes goes through here, to the documented /api with
// the signed-in token: the console can never do more than that token may.
// Connection state (reachable or not) and sign-out on 401 are announced to the
// app shell through small listener sets rather than a state library.

const TOKEN_KEY = 'sluice.token';

/** The token lives in session storage: gone when the tab closes, never in the URL. */
export const session = {
  token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token: string) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    for (const l of signOutListeners) l();
  },
};

/** An API refusal: its summary and, for a 422, the fields it names. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly summary: string,
    readonly fields: Record<string, string[]> = {},
  ) {
    super(summary);
  }
}

const signOutListeners = new Set<() => void>();
const connectionListeners = new Set<(online: boolean) => void>();
let online = true;

export function onSignOut(l: () => void): () => void {
  signOutListeners.add(l);
  return () => signOutListeners.delete(l);
}

export function onConnection(l: (online: boolean) => void): () => void {
  connectionListeners.add(l);
  return () => connectionListeners.delete(l);
}

function setOnline(value: boolean) {
  if (online === value) return;
  online = value;
  for (const l of connectionListeners) l(value);
}

type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

export async function api<T = unknown>(method: Method, path: string, body?: unknown): Promise<T> {
  const token = session.token();
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch {
    setOnline(false);
    throw new ApiFailure(0, 'Cannot reach the gateway. Retrying…');
  }
  // A 502/503/504 from a proxy in front of the gateway is a lost connection too.
  if (res.status >= 502 && res.status <= 504 && !(res.headers.get('content-type') ?? '').includes('json')) {
    setOnline(false);
    throw new ApiFailure(res.status, 'The gateway does not answer. Retrying…');
  }
  setOnline(true);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // Not JSON: reported below with the status.
  }
  if (res.ok) return parsed as T;
  const err = (parsed ?? {}) as { summary?: string; validation_errors?: Record<string, string[]> };
  const failure = new ApiFailure(res.status, err.summary ?? `HTTP ${res.status}`, err.validation_errors ?? {});
  // An expired or revoked token: back to sign-in.
  if (res.status === 401 && token) session.signOut();
  throw failure;
}

export const enc = encodeURIComponent;
